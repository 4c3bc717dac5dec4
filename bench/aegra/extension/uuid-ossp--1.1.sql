-- Aegra's schema asks for uuid-ossp's uuid_generate_v4(); the embedded Postgres build ships no
-- uuid-ossp, so bench/servers.py aegra_database points the database here for this one.
CREATE FUNCTION uuid_generate_v4() RETURNS uuid
    AS 'SELECT gen_random_uuid()' LANGUAGE sql VOLATILE PARALLEL SAFE;
