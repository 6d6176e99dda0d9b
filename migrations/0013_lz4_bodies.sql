-- mailrun schema, version 13: message bodies, headers and attachments are compressed with
-- lz4 where the server was built with it (a build option of PostgreSQL 14 and later,
-- on in Debian's packages). A message row over about 2 KB has its
-- longest values compressed as it is written, and decompressed again by every claim:
-- pglz took 8 % of the server's time enqueueing 2,000 messages of 2 KB, and lz4 does the
-- same work in less time (docs/decisions.md, 45). Values already stored keep
-- their method; both are read alike. A server without lz4 keeps pglz.
DO $$
BEGIN
    IF 'lz4' = ANY ((SELECT enumvals FROM pg_settings
                     WHERE name = 'default_toast_compression')::text[]) THEN
        ALTER TABLE mailrun.messages
            ALTER COLUMN text_body SET COMPRESSION lz4,
            ALTER COLUMN html_body SET COMPRESSION lz4,
            ALTER COLUMN headers SET COMPRESSION lz4,
            ALTER COLUMN attachments SET COMPRESSION lz4;
    END IF;
END
$$;
