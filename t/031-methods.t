# entra_auth and entra_require_* inside limit_except: as for nginx's own access directives, the
# block applies to the methods it does not list, and inherits from its location like a location.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: a read/write API: reads need one role, writes the other
--- config
    location /api {
        entra_auth dev;
        entra_require_role Orders.Read Orders.Write;
        limit_except GET HEAD {
            entra_require_role Orders.Write;
        }
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'HEAD /api', "POST /api\n{}", "POST /api\n{}", 'DELETE /api', 'GET /api']
--- more_headers eval
[bearer('--roles', 'Orders.Read'), bearer('--roles', 'Orders.Read'), bearer('--roles', 'Orders.Read'),
 bearer('--roles', 'Orders.Write'), bearer('--roles', 'Orders.Read'), bearer('--roles', 'Orders.Write')]
--- error_code eval: [200, 200, 403, 200, 403, 200]
--- response_headers eval
[undef, undef, 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_role"',
 undef, 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_role"', undef]

=== TEST 2: a CORS preflight answered before the access phase, as the operator wrote it
OPTIONS is listed: for the methods a limit_except block applies to, nginx runs the block's own
rewrite rules, not the location's, so the location's `if` would never see a preflight.
--- config
    location /api {
        if ($request_method = OPTIONS) {
            add_header Access-Control-Allow-Origin https://app.example always;
            add_header Access-Control-Allow-Headers Authorization always;
            return 204;
        }
        entra_auth dev;
        limit_except GET HEAD OPTIONS {
            entra_require_role Orders.Write;
        }
        proxy_pass http://backend;
    }
--- request eval: ['OPTIONS /api', "POST /api\n{}", "POST /api\n{}"]
--- more_headers eval
["Origin: https://app.example\nAccess-Control-Request-Method: POST", bearer('--roles', 'Orders.Read'),
 bearer('--roles', 'Orders.Write')]
--- error_code eval: [204, 403, 200]
--- response_headers eval: ['Access-Control-Allow-Origin: https://app.example', undef, undef]

=== TEST 3: without such an answer, OPTIONS is a method like the others (not listed: the block applies)
--- config
    location /api {
        entra_auth dev;
        limit_except GET HEAD {
            entra_require_role Orders.Write;
        }
        proxy_pass http://backend;
    }
--- request eval: ['OPTIONS /api', 'OPTIONS /api', 'GET /api']
--- more_headers eval: ['', bearer('--roles', 'Orders.Read'), '']
--- error_code eval: [401, 403, 401]

=== TEST 4: reads open to all, writes with a token and a role (entra_auth inside the block)
--- config
    location /api {
        limit_except GET HEAD {
            entra_auth dev;
            entra_require_role Orders.Write;
        }
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', "POST /api\n{}", "POST /api\n{}", "PUT /api\n{}"]
--- more_headers eval: ['', '', bearer('--roles', 'Orders.Write'), bearer('--roles', 'Orders.Read')]
--- error_code eval: [200, 401, 200, 403]
--- response_body_like eval: ['backend /api oid=', '', 'backend /api', '']

=== TEST 5: entra_auth off inside the block: the block's methods need no token
--- config
    location /api {
        entra_auth dev;
        limit_except GET {
            entra_auth off;
        }
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', "POST /api\n{}"]
--- more_headers eval: ['', bearer(), '']
--- error_code eval: [401, 200, 200]

=== TEST 6: the block inherits what it does not set, and replaces what it sets
--- config
    location /api {
        entra_auth dev;
        entra_require_group 5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77;
        entra_require_role Orders.Read;
        limit_except GET {
            entra_require_role Orders.Write;
        }
        proxy_pass http://backend;
    }
--- request eval: ["POST /api\n{}", "POST /api\n{}", "POST /api\n{}", 'GET /api']
--- more_headers eval
[bearer('--roles', 'Orders.Write'),
 bearer('--roles', 'Orders.Write', '--groups', '5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77'),
 bearer('--roles', 'Orders.Read', '--groups', '5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77'),
 bearer('--roles', 'Orders.Read', '--groups', '5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77')]
--- error_code eval: [403, 200, 403, 200]
--- response_headers eval
['WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_group"', undef,
 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_role"', undef]

=== TEST 7: a requirement turned off for the block's methods
--- config
    location /api {
        entra_auth dev;
        entra_require_role Orders.Admin;
        limit_except GET {
            entra_require_role off;
        }
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', "POST /api\n{}", "POST /api\n{}"]
--- more_headers eval: [bearer(), bearer(), '']
--- error_code eval: [403, 200, 401]

=== TEST 8: requirements inherited from the server level reach the block too
--- config
    entra_auth dev;
    entra_require_scope Orders.Read;
    location /api {
        limit_except GET {
            entra_require_role Orders.Write;
        }
        proxy_pass http://backend;
    }
--- request eval: ["POST /api\n{}", "POST /api\n{}"]
--- more_headers eval: [bearer('--roles', 'Orders.Write'), bearer('--roles', 'Orders.Write', '--scp', 'Orders.Read')]
--- error_code eval: [403, 200]
