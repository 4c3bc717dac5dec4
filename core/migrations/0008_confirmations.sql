-- Human-in-the-loop confirmation of sensitive tools: a run can end 'interrupted' with a held
-- call, and a confirm request resumes it once: resumed_by names the run that took the decision
-- (claimed atomically), resumes is set on that run and names the interrupted one.
ALTER TABLE runs ADD COLUMN resumed_by text;
ALTER TABLE runs ADD COLUMN resumes text;
-- The audit trail records the hold and the caller's decision next to allowed/denied calls.
ALTER TABLE tool_audit DROP CONSTRAINT tool_audit_decision_check;
ALTER TABLE tool_audit ADD CONSTRAINT tool_audit_decision_check
    CHECK (decision IN ('allowed', 'denied', 'held', 'approved', 'rejected'));
ALTER TABLE tool_audit ADD COLUMN confirmation_id text;
ALTER TABLE tool_audit ADD COLUMN comment text;
