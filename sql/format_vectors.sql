-- format_vectors: the C implementation opens the test vectors of
-- docs/format.md ("One envault chain"), which test/vectors/check_vectors.py,
-- an independent implementation, computes and checks.  The key rows are
-- inserted exactly as the vectors state them; the master key of
-- test/regress.conf is the vectors' master key.
INSERT INTO envault.tenants (tenant, key_version, wrapped_key, master_kcv, created_by)
VALUES ('vector-tenant', 1,
        '\x01a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7ec8d78d78bf2c83dce2faa291c1de02ea40cf308a2047f69629e14bdea4a942edd1c0767fa13127daf355b746cb7a3b3',
        '\x38d0a41f035e22799b421245ee1e3ec4', 'regress');
INSERT INTO envault.data_keys (key_id, tenant, purpose, version, state,
                               wrapped_key, tenant_key_version, created_by)
VALUES (81985529216486895, 'vector-tenant', 'secrets', 1, 'active',
        '\x01c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d75aa6bff490160afcf2375e166829e958efcbf336d2ac5115bbf7e129cdb2d6ce35d0142ffeda45458b7f39f6ce00fba3',
        1, 'regress');
-- the key id of the vectors, 0x0123456789abcdef
SELECT to_hex(key_id) AS key_id FROM envault.data_keys WHERE tenant = 'vector-tenant';

-- the three data ciphertexts, with the aad they were encrypted with
CREATE TABLE regress_vectors (id int PRIMARY KEY, c bytea, aad bytea);
INSERT INTO regress_vectors VALUES
(1, '\x455601010123456789abcdefe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7a449b18bac2729a901b1328890b46855cb5bdef5fe056d6921c32e1cb711088e9b4f66',
 'row:42'),
(2, '\x455601010123456789abcdef808182838485868788898a8b8c8d8e8f9091929394959697edbaea78b38daf2aaeab1dee4be9a058c7c85d5a266d44e85429b515ab0a30569e038c',
 NULL),
(3, '\x455601010123456789abcdef606162636465666768696a6b6c6d6e6f7071727374757677d5f728f4d32445f63fc49576426a91f5',
 NULL);

-- each decrypts to its plaintext
SELECT id, octet_length(c) AS len,
       quote_literal(envault.env_decrypt_text(c, aad)) AS plaintext
  FROM regress_vectors ORDER BY id;
SELECT envault.env_decrypt(c, aad) FROM regress_vectors WHERE id = 1;

-- a NULL aad is the same as an empty one
SELECT id, quote_literal(envault.env_decrypt_text(c, ''::bytea)) AS plaintext
  FROM regress_vectors WHERE aad IS NULL ORDER BY id;

-- any other aad fails authentication
SELECT envault.env_decrypt_text(c, 'row:43'::bytea) FROM regress_vectors WHERE id = 1;
SELECT envault.env_decrypt_text(c) FROM regress_vectors WHERE id = 1;
SELECT envault.env_decrypt_text(c, 'row:42'::bytea) FROM regress_vectors WHERE id = 2;
SELECT envault.env_decrypt_text(c, '\x00'::bytea) FROM regress_vectors WHERE id = 3;

-- the C code encrypts under the same row: same header, key id, round trip
SELECT substr(envault.env_encrypt('vector-tenant', 'secrets', 'x'), 1, 12) AS header;
SELECT envault.env_decrypt_text(envault.env_encrypt('vector-tenant', 'secrets',
                                                    'envault test vector', 'row:42'::bytea),
                                'row:42'::bytea);

-- the blind index of the vectors: the blind-index key of (vector-tenant,
-- email) is the data key of purpose _bidx.email (0x0123456789abcdf0)
INSERT INTO envault.data_keys (key_id, tenant, purpose, version, state,
                               wrapped_key, tenant_key_version, created_by)
VALUES (81985529216486896, 'vector-tenant', '_bidx.email', 1, 'active',
        '\x01d0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7fc7970231b56d5d3eb1e22787a5820ef3a5255f9a9eb7b408f215bb042522da2af36bcdac10658563c09748d870a144e',
        1, 'regress');
SELECT envault.blind_index('vector-tenant', 'email', 'alice@example.com')
       = '\x8376581f79a61938ce591c4a480fb4fc9a4075900c4f34bbd1343d94b12196f0' AS blind_index_matches;

-- the token of the vectors, stored as the vectors state it (its pepper is
-- the pepper of test/regress.conf), verifies to its tenant
INSERT INTO envault.tokens (token_id, tenant, token_hmac, pepper_version, label, created_by)
VALUES ('7071727374757677', 'vector-tenant',
        '\x58e09d472a36027286b2d7ff123b7c8893c715275cbb3883b7b40706aa4598e6',
        '5735a5a8876644b2', 'vector', 'regress');
SELECT envault.verify_token(convert_from('\x6576745f373037313732373337343735373637375f393039313932393339343935393639373938393939613962396339643965396661306131613261336134613561366137613861396161616261636164616561665f6463666331313030', 'UTF8'));
-- a token the C code issues records the same pepper version (its HMAC is
-- checked with pgcrypto in sql/tenant_context.sql)
SELECT envault.issue_token('vector-tenant', 'issued here') IS NOT NULL AS issued;
SELECT pepper_version FROM envault.tokens WHERE label = 'issued here';

-- remove the vector rows so that later tests do not see them
DROP TABLE regress_vectors;
DELETE FROM envault.tokens WHERE tenant = 'vector-tenant';
DELETE FROM envault.data_keys WHERE tenant = 'vector-tenant';
DELETE FROM envault.tenants WHERE tenant = 'vector-tenant';
SELECT (SELECT count(*) FROM envault.tenants WHERE tenant = 'vector-tenant') AS tenants,
       (SELECT count(*) FROM envault.data_keys WHERE tenant = 'vector-tenant') AS data_keys;
