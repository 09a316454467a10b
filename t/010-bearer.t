# Responses to a protected location: who gets in, and what the others are told.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: a valid token reaches the backend
--- more_headers eval: bearer()
--- error_code: 200
--- response_body
backend /api oid=
--- no_error_log
entra: access denied

=== TEST 2: no token: a bare challenge (RFC 6750 section 3)
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev"
--- error_log eval
qr/entra: access denied: no_token \(provider "dev"\)/

=== TEST 3: another scheme is no token
--- more_headers
Authorization: Basic dXNlcjpwYXNz
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev"

=== TEST 4: a v1 token (sts.windows.net issuer, App ID URI audience)
--- more_headers eval: bearer('--ver', '1')
--- error_code: 200

=== TEST 5: an app-only token with roles
--- more_headers eval: bearer('--app', 'nightly-job')
--- error_code: 200

=== TEST 6: an invalid token: invalid_token with the reason
--- more_headers eval: bearer('--exp', '-3600')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="expired"
--- error_log eval
qr/entra: access denied: expired \(provider "dev"\): the token has expired/
--- no_error_log
[error]

=== TEST 7: the denial log names who was refused but never the token
--- config
    location /api {
        entra_auth dev;
        entra_require_group admins;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--user', 'carol', '--groups', 'staff')
--- error_code: 403
--- error_log eval
qr/\[info\] .*entra: access denied: missing_group \(provider "dev", oid [0-9a-f-]{36}, tid 9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93, kid \S+\): groups \(object ids\) required, any of: "admins"; the token has: "staff", client/
--- no_error_log eval
qr/eyJ/

=== TEST 8: ES256 and EdDSA keys work once allowed
--- http_config eval: provider('algorithms RS256 ES256 EdDSA;')
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--key', kid_of_kind('P-256')), bearer('--key', kid_of_kind('Ed25519'))]
--- error_code eval: [200, 200]

=== TEST 9: a configured audience replaces the default one
--- http_config
    entra_provider dev {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        audience   api://orders;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--aud', 'api://orders'), bearer()]
--- error_code eval: [200, 401]

=== TEST 10: a multi-tenant provider accepts the listed tenants only
--- http_config
    entra_provider dev {
        tenant          organizations;
        client_id       6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        allowed_tenants 0d8e5b2a-7c4f-4e19-b3a6-1f5d9c2e8a70;
        jwks_file       $TEST_NGINX_ENTRA_JWKS;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval
[bearer('--tid', $EntraTest::OTHER_TENANT), bearer('--tid', $EntraTest::OTHER_TENANT, '--ver', '1'), bearer()]
--- error_code eval: [200, 200, 401]
--- response_headers eval
[undef, undef, 'WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="tenant_not_allowed"']

=== TEST 11: a key that names its tenant's issuer signs that tenant's v1 and v2 tokens
--- http_config
    entra_provider dev {
        tenant          organizations;
        client_id       6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        allowed_tenants any;
        jwks_file       $TEST_NGINX_ENTRA_JWKS;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval
[bearer('--key', kid_with_issuer(), '--tid', $EntraTest::OTHER_TENANT),
 bearer('--key', kid_with_issuer(), '--tid', $EntraTest::OTHER_TENANT, '--ver', '1')]
--- error_code eval: [200, 200]

=== TEST 12: allowed_tenants any must be said, and then takes every tenant
--- http_config
    entra_provider dev {
        tenant          common;
        client_id       6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        allowed_tenants any;
        jwks_file       $TEST_NGINX_ENTRA_JWKS;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--tid', $EntraTest::OTHER_TENANT), bearer()]
--- error_code eval: [200, 200]

=== TEST 13: configured issuers replace the built-in table
--- http_config
    entra_provider dev {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        issuer     "https://sts.windows.net/{tenantid}/";
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--ver', '1'), bearer()]
--- error_code eval: [200, 401]

=== TEST 14: require_permission off lets a token without scp or roles in
--- http_config eval: provider('require_permission off;')
--- more_headers eval: bearer('--unset', 'scp')
--- error_code: 200

=== TEST 15: leeway 0 refuses a token that expired a few seconds ago
--- http_config eval: provider('leeway 0;')
--- more_headers eval: bearer('--exp', '-5')
--- error_code: 401
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="invalid_token", error_description="expired"

=== TEST 16: two providers, one per location, each with its own audience and realm
--- http_config
    entra_provider orders {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
    entra_provider billing {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  4b9e1f3a-2c7d-4e8f-a1b5-6d3c9e2f7a18;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- config
    location /orders { entra_auth orders; proxy_pass http://backend; }
    location /billing { entra_auth billing; proxy_pass http://backend; }
--- request eval: ['GET /orders', 'GET /billing', 'GET /billing']
--- more_headers eval: [bearer(), bearer(), bearer('--aud', '4b9e1f3a-2c7d-4e8f-a1b5-6d3c9e2f7a18')]
--- error_code eval: [200, 401, 200]
--- response_headers eval
[undef, 'WWW-Authenticate: Bearer realm="billing", error="invalid_token", error_description="wrong_audience"', undef]

=== TEST 17: a 401 from the module is not turned into a 5xx by an error_page
--- config
    location /api {
        entra_auth dev;
        error_page 401 = @denied;
        proxy_pass http://backend;
    }
    location @denied {
        return 401 "denied\n";
    }
--- error_code: 401
--- response_body
denied

=== TEST 18: the denial line carries $request_id when the configuration uses it, to join the access log
--- http_config eval: provider() . "    log_format ids '\$request_id';\n    access_log logs/ids.log ids;\n"
--- error_code: 401
--- error_log eval
qr/entra: access denied: no_token \(provider "dev", request_id [0-9a-f]{32}\)/
