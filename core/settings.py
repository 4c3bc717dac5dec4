"""One Settings object (practice 12): ``config/<KEEL_ENV>.yaml`` plus environment variables.

Every environment file has the same structure; environment variables override a field with
``KEEL_<SECTION>__<FIELD>`` (for example ``KEEL_AUTH__JWT_SECRET``). A few conventional names
are honoured too: ``DATABASE_URL``, ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``. Placeholder
secrets are refused outside ``dev`` and ``test``.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(os.environ.get("KEEL_CONFIG_DIR", ROOT / "config"))
PLACEHOLDER_PREFIX = "change-me"


class ServerSettings(BaseModel):
    """Where the HTTP API listens, and what it accepts before any route runs.

    ``max_header_bytes`` caps the request line plus all header lines (431 beyond it, before
    authentication), ``max_headers`` their number. ``allowed_hosts`` are the ``Host`` values
    served (``*`` any, ``*.example.com`` a domain's subdomains); dev and test keep loopback
    names only, so a web page cannot reach a local server by DNS rebinding.
    ``metrics_scope`` set: ``/metrics`` needs a bearer token holding that scope.
    ``cors_origins`` are the web origins whose pages may call the API from a browser (a
    LangGraph client such as Agent Chat UI served elsewhere); empty: none (same origin only).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    max_header_bytes: int = Field(default=16_384, ge=1024)
    max_headers: int = Field(default=100, ge=8)
    allowed_hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1", "localhost", "::1"])
    metrics_scope: str | None = None
    cors_origins: list[str] = Field(default_factory=list)


class DatabaseSettings(BaseModel):
    """Postgres: an external URL, or an embedded server started in ``data_dir``."""

    url: str | None = None
    pool_min: int = 1
    pool_max: int = 10
    # How long a request waits for a pooled connection before it answers 503 (Retry-After):
    # while Postgres is down the pool cannot open any, and the default 30 s looked like a hang.
    pool_timeout_s: float = 3.0
    embedded_port: int = 0
    # "async": checkpoint transactions commit without waiting for the WAL flush
    # (synchronous_commit=off on their own pool); the event log always waits (README, Benchmarks).
    checkpoint_commit: Literal["sync", "async"] = "async"


class LocalModelSettings(BaseModel):
    """The packaged GGUF served by llama.cpp when ``llm.provider`` is ``local``.

    ``parts`` are files inside installed packages (``module/relative/path``), joined in order
    into ``<data_dir>/models/<file>`` (one part is used in place); the result must match
    ``sha256``.
    """

    model_config = ConfigDict(frozen=True)

    file: str = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
    parts: tuple[str, ...] = ()
    sha256: str = ""
    port: int = 0
    n_ctx: int = 4096
    n_parallel: int = 2
    threads: int = 2
    start_timeout_s: float = 60.0


class FallbackModelSettings(BaseModel):
    """The model asked when the main one times out or fails (5xx) after its retry."""

    model_config = ConfigDict(frozen=True)

    base_url: str
    model: str = "local"
    api_key: str = "local"
    timeout_s: float = 60.0


class LLMSettings(BaseModel):
    """The chat model, always reached through ``langchain_openai.ChatOpenAI``."""

    model_config = ConfigDict(frozen=True)

    provider: Literal["local", "openai"] = "local"
    base_url: str | None = None
    model: str = "local"
    api_key: str = "local"
    temperature: float = 0.0
    max_tokens: int = 384
    plan_max_tokens: int = 256
    step_max_tokens: int = 160
    # Plan unambiguous questions by rules (graphs/routing.py) instead of asking the model; the
    # test config turns it off so scripted plans drive the graph.
    rule_routing: bool = True
    # A tool step's finding: the tool's own result as text ("tool": names and numbers exactly
    # as the tool gave them, one model call fewer per step) or the model's restatement of it.
    step_findings: Literal["tool", "model"] = "tool"
    timeout_s: float = 120.0
    local: LocalModelSettings = Field(default_factory=LocalModelSettings)
    fallback: FallbackModelSettings | None = None


AsymmetricAlgorithm = Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]


class OidcClaims(BaseModel):
    """Where an identity provider's token carries Keel's identity.

    ``scopes``: a space-separated string (OAuth ``scope``) or a list of strings. ``tier``: the
    claim whose value(s) (a string or a list, e.g. groups or roles the provider's admins
    assign) are looked up in ``tier_map``; the highest mapped tier wins, none gives
    ``default_tier``. A tier is never taken verbatim from a token the provider lets users edit.
    ``tenant``: the claim naming the tenant; unset, every user is in ``default_tenant``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    user: str = "sub"
    tenant: str | None = "tenant"
    default_tenant: str = "default"
    scopes: str = "scope"
    tier: str | None = "groups"
    tier_map: dict[str, Literal["free", "pro", "enterprise"]] = Field(default_factory=dict)
    default_tier: Literal["free", "pro", "enterprise"] = "free"


class OidcSettings(BaseModel):
    """Tokens from an OpenID Connect provider, verified with its published keys (JWKS).

    ``discovery_url`` unset: ``<issuer>/.well-known/openid-configuration``. Keys are cached
    for ``jwks_cache_s``; a token signed by an unknown key id refetches the set (key rotation),
    at most once per ``jwks_min_refresh_s``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str
    audience: str
    discovery_url: str | None = None
    algorithms: list[AsymmetricAlgorithm] = Field(
        default_factory=lambda: list[AsymmetricAlgorithm](["RS256", "ES256"]), min_length=1
    )
    jwks_cache_s: float = Field(default=300.0, gt=0)
    jwks_min_refresh_s: float = Field(default=30.0, ge=0)
    http_timeout_s: float = Field(default=5.0, gt=0)
    leeway_s: float = Field(default=30.0, ge=0)
    claims: OidcClaims = Field(default_factory=OidcClaims)


class AuthSettings(BaseModel):
    """Bearer JWT verification: HS256 tokens Keel signs (``local``), or an OIDC provider's.

    Every token must carry ``exp`` and ``iat`` and live at most ``max_token_lifetime_s``.
    """

    provider: Literal["local", "oidc"] = "local"
    jwt_secret: str = f"{PLACEHOLDER_PREFIX}-dev-secret-at-least-32-bytes-long"
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "keel"
    token_ttl_s: int = Field(default=3600, ge=1)
    max_token_lifetime_s: int = Field(default=86_400, ge=1)
    dev_tokens: bool = False
    oidc: OidcSettings | None = None

    @model_validator(mode="after")
    def _oidc_configured(self) -> AuthSettings:
        if self.provider == "oidc" and self.oidc is None:
            raise ValueError("auth.provider is oidc but auth.oidc is not set")
        return self


# What a second run on a busy thread does: refused (409), queued behind the live run, or run
# after the live run is cancelled.
DoubleTexting = Literal["reject", "enqueue", "interrupt"]


class RunSettings(BaseModel):
    """Limits and policies that apply to every run."""

    max_body_bytes: int = 262_144
    recursion_limit: int = 25
    double_texting: DoubleTexting = "reject"
    # A run is leased to the replica running it, renewed every heartbeat_s; a lease not renewed
    # for stale_after_s lapses and another replica resumes the run from its last checkpoint,
    # at most max_attempts times in all (the first included), then ends it run_attempts_exhausted.
    heartbeat_s: float = 10.0
    stale_after_s: float = 30.0
    max_attempts: int = Field(default=3, ge=1)


class StreamSettings(BaseModel):
    """The live event path: text coalescing, readers' buffers and keep-alive pings."""

    model_config = ConfigDict(extra="forbid")

    # Text deltas arriving within this window (from the first) become one text_delta
    # event; 0 sends each piece as its own event.
    delta_window_ms: float = Field(default=25.0, ge=0, le=1000)
    # A coalesced text_delta is sent once it holds this many characters, window or not.
    delta_max_chars: int = Field(default=2000, ge=1)
    # Frames a live reader may fall behind before it is dropped (it resumes by Last-Event-ID).
    subscriber_buffer: int = Field(default=1024, ge=1)
    ping_s: float = Field(default=15.0, gt=0)  # an SSE comment after this long without frames
    # Replay pages of finished runs kept in memory, in MiB (0: none). A full cache is part of
    # the process's steady size: the larger it is, the longer RSS climbs before it levels.
    replay_cache_mb: float = Field(default=8.0, ge=0)


class RetentionSettings(BaseModel):
    """How long the event log and checkpoints are kept (``keel prune``)."""

    days: int = 30
    max_events_per_thread: int = 100_000


class TierLimits(BaseModel):
    """What one tier may use; ``policy`` says whether a run over a limit is refused or queued."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    runs_per_minute: int = Field(default=10, ge=1)
    tool_calls_per_minute: int = Field(default=60, ge=1)
    concurrent_runs: int = Field(default=2, ge=1)
    max_run_duration_s: float = Field(default=60.0, gt=0)
    llm_tokens_per_day: int = Field(default=200_000, ge=1)
    policy: Literal["reject", "queue"] = "reject"
    max_queued: int = Field(default=10, ge=0)
    # The share of a replica's run slots this tier's runs may hold at once: a lower tier's
    # burst leaves the rest to the others (at least one slot).
    max_active_share: float = Field(default=1.0, gt=0, le=1)
    max_threads: int = Field(default=1000, ge=1)
    concurrent_streams: int = Field(default=8, ge=1)
    # The tenant's uploaded documents: how many, and their bytes in all.
    max_documents: int = Field(default=100, ge=0)
    max_document_bytes: int = Field(default=200_000_000, ge=0)


class QuotaSettings(BaseModel):
    """Quotas per tier, their storage (``memory://`` or ``redis://``) and run slots per process."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    storage_url: str = "memory://"
    key_prefix: str = "keel"
    max_active_runs: int = Field(default=16, ge=1)
    free: TierLimits = Field(default_factory=TierLimits)
    pro: TierLimits = Field(default_factory=TierLimits)
    enterprise: TierLimits = Field(default_factory=TierLimits)


class TracingSettings(BaseModel):
    """OpenTelemetry spans, exported by OTLP/HTTP when an endpoint is set, or to the console.

    ``enabled: false`` makes every span a no-op (the trace_id still flows everywhere else).
    """

    enabled: bool = True
    otlp_endpoint: str | None = None
    console: bool = False
    service_name: str = "keel"


class LogSettings(BaseModel):
    """Structured log output."""

    level: str = "INFO"
    json_logs: bool = True


class McpServerPin(BaseModel):
    """A pinned tool server version: ``tools/servers/<server>/v<major>/`` or ``command``."""

    model_config = ConfigDict(frozen=True)

    server: str
    version: str
    transport: Literal["stdio"] = "stdio"
    sandbox: bool = False
    command: list[str] | None = None


class VariantSettings(BaseModel):
    """One variant of an agent: what it changes in the model call (A/B strategies)."""

    model: str | None = None
    temperature: float | None = None
    description: str = ""


class RoutingSettings(BaseModel):
    """How a run picks its agent's variant.

    ``fixed`` always takes ``default``; ``thompson`` samples on feedback and explores
    uniformly with probability ``exploration_floor``; ``seed`` makes choices reproducible.
    """

    policy: Literal["fixed", "thompson"] = "fixed"
    default: str | None = None
    exploration_floor: float = Field(default=0.1, ge=0, le=1)
    seed: int | None = None


class AgentSettings(BaseModel):
    """An agent, the pinned tool servers (keys of ``mcp_servers``) it may use, its variants."""

    tools: list[str] = Field(default_factory=list)
    variants: dict[str, VariantSettings] = Field(default_factory=dict)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)


class FeedbackSettings(BaseModel):
    """Implicit signals: a follow-up within ``follow_up_window_s`` marks the last answer."""

    follow_up_window_s: float = Field(default=60.0, gt=0)


class SandboxSettings(BaseModel):
    """Limits of one sandboxed call (bubblewrap, a cgroup per jail, rlimits).

    ``cpu_s``, ``memory_mb`` and ``nproc`` hold for the whole jail (all its processes) where a
    cgroup or a uid of the pool can be had (``tools.jail_limits`` says which applies);
    ``cgroups=False`` skips cgroups. ``cgroup_parent`` is the cgroup (a path inside the
    hierarchy) under which each jail gets its own; empty means the server's own cgroup.
    ``uid_pool`` uids from ``uid`` on serve the jails when no cgroup is writable.
    """

    cpu_s: int = 5
    memory_mb: int = 1024
    nproc: int = 64
    fsize_mb: int = 8
    tmpfs_mb: int = 64
    shm_mb: int = 16
    wall_s: float = 15.0
    output_bytes: int = 4_000_000
    uid: int = 60_000
    uid_pool: int = 64
    cgroups: bool = True
    cgroup_parent: str = ""


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def _seconds(value: Any) -> Any:
    m = _DURATION.match(value) if isinstance(value, str) else None
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)] if m else value


# A tool failure, by kind: ``tools.errors.failure_kind`` maps error codes onto these.
FailureKind = Literal["rate_limited", "timeout", "unavailable", "failed", "circuit_open"]


class RetrySettings(BaseModel):
    """Retries of a failed tool call: jittered exponential backoff, only for the codes in ``on``."""

    attempts: int = Field(default=2, ge=1)
    backoff_s: float = Field(default=0.2, ge=0)
    max_backoff_s: float = Field(default=2.0, ge=0)
    on: list[FailureKind] = Field(default_factory=lambda: list[FailureKind](["unavailable"]))


class BreakerSettings(BaseModel):
    """A circuit breaker per tool server.

    It opens after ``threshold`` failures in a row and lets one trial call through after
    ``cooldown_s`` (half-open).
    """

    threshold: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, gt=0)


_CONFIRM_ENTRY = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)?$"


class ToolSettings(BaseModel):
    """The tool gateway: lock file, timeouts, retries, breaker, repair, GitHub, the sandbox.

    ``confirm`` names the tools whose every call waits for the caller's confirmation (a
    human-in-the-loop interrupt resumed by ``POST /v1/runs/{run_id}/confirm``): a server
    (``python_exec``: all its tools), a tool (``schedule_meeting``) or both
    (``calendar.schedule_meeting``).
    """

    lock_file: Path = Path("tools.lock")
    call_timeout_s: float = 30.0
    default_timezone: str = "UTC"
    repair_llm_attempts: int = Field(default=2, ge=0, le=2)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    github_api: str = "https://api.github.com"
    github_token: str | None = None
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    confirm: list[Annotated[str, Field(pattern=_CONFIRM_ENTRY)]] = Field(
        default_factory=lambda: ["python_exec", "calendar.schedule_meeting"]
    )


class FallbackRule(BaseModel):
    """How one pinned server degrades: on which failure codes, to what.

    ``use: cache`` answers from an earlier successful result no older than ``max_age``
    (seconds, or ``30m``/``12h``/``1d``); ``use: tool`` calls the pin ``tool`` instead;
    ``use: skip`` goes on without the step's tool.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    on: list[FailureKind]
    use: Literal["cache", "tool", "skip"]
    max_age: Annotated[float, BeforeValidator(_seconds)] = 86_400.0
    tool: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        # YAML 1.1 reads a bare ``on:`` key as the boolean true.
        if isinstance(data, dict) and True in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


FaultMode = Literal["rate_limited", "timeout", "crash"]


class FaultSettings(BaseModel):
    """Fault injection for tests and demos; must stay empty in prod.

    ``tools`` makes a pinned server's tools answer 429, hang past the call timeout or crash
    (inside the real server process); ``llm: timeout`` makes every model call time out.
    """

    tools: dict[str, FaultMode] = Field(default_factory=dict)
    llm: Literal["timeout"] | None = None


class DocumentSettings(BaseModel):
    """Uploaded documents: limits that refuse a file before anything of it is stored.

    ``max_file_bytes`` caps one upload; ``max_expanded_bytes`` caps what a PDF's compressed
    streams expand to (a decompression bomb), ``max_text_chars`` the text taken from a file,
    ``max_html_depth`` the element nesting of an HTML file. Chunks are ``chunk_chars`` long.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_file_bytes: int = Field(default=20_000_000, ge=1)
    max_expanded_bytes: int = Field(default=200_000_000, ge=1)
    max_text_chars: int = Field(default=5_000_000, ge=1)
    max_pages: int = Field(default=2000, ge=1)
    max_html_depth: int = Field(default=200, ge=1)
    chunk_chars: int = Field(default=900, ge=200)
    embed_batch: int = Field(default=32, ge=1)


class SessionMemorySettings(BaseModel):
    """Session memory: Qdrant (local folder or server URL) and the embedding model.

    ``url`` unset: qdrant-client local mode in ``<data_dir>/qdrant`` (one process).
    ``embeddings_base_url`` unset: the packaged all-MiniLM-L6-v2 (int8 ONNX, CPU); set: any
    OpenAI-compatible ``/v1/embeddings`` endpoint serving ``embeddings_model``.
    """

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    url: str | None = None
    api_key: str | None = None
    collection: str = "keel_session"
    embeddings_base_url: str | None = None
    embeddings_model: str = "all-MiniLM-L6-v2"
    embeddings_api_key: str = "local"
    dimensions: int = 384
    limit: int = 4
    min_score: float = 0.35
    reuse_score: float = 0.6


class MemorySettings(BaseModel):
    """Layered memory: the short-term token budget, session memory and the long-term key.

    ``master_key`` derives one AES-GCM key per tenant (HKDF); ``previous_master_keys`` still
    decrypt rows written before a rotation (``keel memory rotate-key`` re-encrypts them).
    """

    model_config = ConfigDict(frozen=True)

    short_term_budget_tokens: int = Field(default=1500, ge=64)
    summary_max_tokens: int = Field(default=300, ge=16)
    master_key: str = f"{PLACEHOLDER_PREFIX}-dev-memory-master-key-32-bytes-long"
    previous_master_keys: tuple[str, ...] = ()
    session: SessionMemorySettings = Field(default_factory=SessionMemorySettings)


class Settings(BaseSettings):
    """Keel's whole configuration, validated at start-up."""

    model_config = SettingsConfigDict(env_prefix="KEEL_", env_nested_delimiter="__", extra="forbid")

    env: Literal["dev", "test", "prod"] = "dev"
    data_dir: Path = ROOT / ".keel"
    server: ServerSettings = Field(default_factory=ServerSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    runs: RunSettings = Field(default_factory=RunSettings)
    streams: StreamSettings = Field(default_factory=StreamSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    mcp_servers: dict[str, McpServerPin] = Field(default_factory=dict)
    agents: dict[str, AgentSettings] = Field(default_factory=lambda: {"research": AgentSettings()})
    tools: ToolSettings = Field(default_factory=ToolSettings)
    fallbacks: dict[str, FallbackRule] = Field(default_factory=dict)
    faults: FaultSettings = Field(default_factory=FaultSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    documents: DocumentSettings = Field(default_factory=DocumentSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Order: explicit arguments, environment, then the YAML file of ``KEEL_ENV``."""
        yaml_file = CONFIG_DIR / f"{os.environ.get('KEEL_ENV', 'dev')}.yaml"
        return (
            init_settings,
            _ConventionalEnv(settings_cls),
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file),
        )

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if not self.data_dir.is_absolute():
            self.data_dir = ROOT / self.data_dir
        if not self.tools.lock_file.is_absolute():
            self.tools.lock_file = ROOT / self.tools.lock_file
        for agent, spec in self.agents.items():
            unknown = [t for t in spec.tools if t not in self.mcp_servers]
            if unknown:
                raise ValueError(f"agent {agent!r} pins unknown mcp_servers {unknown}")
            default = spec.routing.default
            if default is not None and default not in spec.variants:
                raise ValueError(f"agents.{agent}.routing.default names no variant: {default!r}")
        for pin, rule in self.fallbacks.items():
            if pin not in self.mcp_servers or (rule.use == "tool" and rule.tool is None):
                raise ValueError(f"fallbacks.{pin}: unknown pin, or use: tool without tool")
            if rule.tool is not None and rule.tool not in self.mcp_servers:
                raise ValueError(f"fallbacks.{pin}.tool: unknown pin {rule.tool!r}")
        unknown_faults = [p for p in self.faults.tools if p not in self.mcp_servers]
        if unknown_faults:
            raise ValueError(f"faults.tools names unknown mcp_servers {unknown_faults}")
        if self.env == "prod":
            if self.server.metrics_scope is None:
                raise ValueError("server.metrics_scope must be set in prod (/metrics needs it)")
            if self.auth.provider == "local" and (
                self.auth.jwt_secret.startswith(PLACEHOLDER_PREFIX)
                or len(self.auth.jwt_secret) < 32
            ):
                raise ValueError(
                    "auth.jwt_secret is a placeholder or shorter than 32 bytes; "
                    "set KEEL_AUTH__JWT_SECRET outside dev"
                )
            if self.auth.dev_tokens:
                raise ValueError("auth.dev_tokens must be false in prod")
            if self.faults.tools or self.faults.llm:
                raise ValueError("faults must be empty in prod (fault injection is for tests)")
            if not self.quotas.storage_url.startswith(("redis://", "rediss://")):
                raise ValueError("quotas.storage_url must be redis:// in prod (shared by replicas)")
            if (
                self.memory.master_key.startswith(PLACEHOLDER_PREFIX)
                or len(self.memory.master_key) < 32
            ):
                raise ValueError(
                    "memory.master_key is a placeholder or shorter than 32 bytes; "
                    "set KEEL_MEMORY__MASTER_KEY outside dev"
                )
        return self


class _ConventionalEnv(PydanticBaseSettingsSource):
    """Maps the conventional ``DATABASE_URL`` and ``OPENAI_*`` variables onto Keel's fields."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if url := os.environ.get("DATABASE_URL"):
            out["database"] = {"url": url}
        llm: dict[str, Any] = {}
        if key := os.environ.get("OPENAI_API_KEY"):
            llm.update(provider="openai", api_key=key)
        if base := os.environ.get("OPENAI_BASE_URL"):
            llm.update(provider="openai", base_url=base)
        if model := os.environ.get("OPENAI_MODEL"):
            llm["model"] = model
        if llm:
            out["llm"] = llm
        return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once."""
    return Settings()
