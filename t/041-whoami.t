# entra_whoami: the identity the access check saw, as JSON, not stored by caches, to the bearer
# of a valid token only; never the token itself.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: a bearer token's identity
--- config
    location = /whoami {
        entra_auth dev;
        entra_whoami;
    }
--- request: GET /whoami
--- more_headers eval: bearer('--user', 'carol', '--groups', '5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77', '--roles', 'Orders.Read', '--acrs', 'c1')
--- error_code: 200
--- response_headers
Content-Type: application/json
Cache-Control: no-store
--- response_body_like eval
qr/^\{"app_id":"[0-9a-f-]{36}","app_only":false,"auth_contexts":\["c1"\],"claims":\{.*"oid":"[0-9a-f-]{36}".*\},"expires":\d+,"group_overage":false,"groups":\["5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77"\],"oid":"[0-9a-f-]{36}","provider":"dev","roles":\["Orders\.Read"\],"scopes":\["access_as_user"\],"signin_time":null,"source":"bearer","tid":"9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93","token_version":"2\.0","upn":"carol\@contoso\.example"\}\n\z/

=== TEST 2: the claims listed apart are not repeated, and the token never shows
--- config
    location = /whoami {
        entra_auth dev;
        entra_whoami;
    }
--- request: GET /whoami
--- more_headers eval: bearer('--groups', '5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77')
--- error_code: 200
--- response_body_unlike eval
qr/eyJ|"claims":\{[^}]*"(groups|roles|scp|acrs)"/

=== TEST 3: without a valid token, the access check answers, not the handler
--- config
    location = /whoami {
        entra_auth dev;
        entra_whoami;
    }
--- request eval: ['GET /whoami', 'GET /whoami']
--- more_headers eval: ['', bearer('--exp', '-3600')]
--- error_code eval: [401, 401]
--- response_body_unlike eval: [qr/provider/, qr/provider/]

=== TEST 4: let in by address under satisfy any: no identity
--- config
    location = /whoami {
        satisfy any;
        allow 127.0.0.1;
        deny all;
        entra_auth dev;
        entra_whoami;
    }
--- request: GET /whoami
--- error_code: 200
--- response_body
{"provider":"dev","source":null}

=== TEST 5: the location of entra_whoami needs entra_auth
--- config
    location = /whoami {
        entra_whoami;
    }
--- must_die
--- error_log
"entra_whoami" needs "entra_auth" in force in its location

=== TEST 6: off unless configured: another location shows nothing of the kind
--- request: GET /api
--- more_headers eval: bearer()
--- error_code: 200
--- response_body_like: ^backend /api
