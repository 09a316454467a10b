# entra_require_*: any of the values in one directive, all of the directives, and nginx's
# inheritance between http, server and location levels.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: a group requirement: any listed group
--- config
    location /api {
        entra_auth dev;
        entra_require_group 0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1 5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval
[bearer('--groups', '5c2a9d0b-7e2f-4d43-8c5a-1b2e3f4a5b77'),
 bearer('--groups', '0B9F3F6E-4A4C-4C1E-9A63-2F1D8F1B57E1'),
 bearer('--groups', '11111111-1111-1111-1111-111111111111')]
--- error_code eval: [200, 200, 403]
--- response_headers eval
[undef, undef, 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_group"']

=== TEST 2: several group directives: all of them
--- config
    location /api {
        entra_auth dev;
        entra_require_group staff;
        entra_require_group admins auditors;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval: [bearer('--groups', 'staff,auditors'), bearer('--groups', 'staff'), bearer('--groups', 'admins')]
--- error_code eval: [200, 403, 403]

=== TEST 3: a token without groups fails a group requirement
--- config
    location /api {
        entra_auth dev;
        entra_require_group staff;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code: 403
--- response_headers
WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_group"

=== TEST 4: group overage fails closed with its own reason
--- config
    location /api {
        entra_auth dev;
        entra_require_group staff;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--overage'), bearer('--claim', 'hasgroups=true')]
--- error_code eval: [403, 403]
--- response_headers eval
['WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="group_overage"',
 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="group_overage"']
--- error_log
entra: access denied: group_overage

=== TEST 5: an overage token is fine where no group is required
--- more_headers eval: bearer('--overage')
--- error_code: 200

=== TEST 6: roles
--- config
    location /api {
        entra_auth dev;
        entra_require_role Orders.Read Orders.Admin;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval: [bearer('--roles', 'Orders.Read'), bearer('--app', 'job', '--roles', 'Orders.Admin'), bearer('--roles', 'orders.read')]
--- error_code eval: [200, 200, 403]
--- response_headers eval
[undef, undef, 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_role"']

=== TEST 7: scopes are words of scp
--- config
    location /api {
        entra_auth dev;
        entra_require_scope Orders.Write;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval: [bearer('--scp', 'Orders.Read Orders.Write'), bearer('--scp', 'Orders.Read'), bearer('--app', 'job', '--roles', 'Orders.Write')]
--- error_code eval: [200, 403, 403]
--- response_headers eval
[undef, 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_scope"', undef]

=== TEST 8: a permission is a scope of a user or a role of an app
--- config
    location /api {
        entra_auth dev;
        entra_require_permission access_as_user Orders.Read.All;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval: [bearer(), bearer('--app', 'job'), bearer('--scp', 'other')]
--- error_code eval: [200, 200, 403]
--- response_headers eval
[undef, undef, 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_permission"']

=== TEST 9: claims: strings, arrays, numbers and booleans
--- config
    location /tid { entra_auth dev; entra_require_claim tid 9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93; proxy_pass http://backend; }
    location /wids { entra_auth dev; entra_require_claim wids 62e90394-69f5-4237-9190-012177145e10; proxy_pass http://backend; }
    location /level { entra_auth dev; entra_require_claim level 3 4; proxy_pass http://backend; }
    location /mfa { entra_auth dev; entra_require_claim mfa true; proxy_pass http://backend; }
--- request eval: ['GET /tid', 'GET /wids', 'GET /level', 'GET /mfa', 'GET /mfa', 'GET /level']
--- more_headers eval
[bearer(),
 bearer('--claim', 'wids=["x","62e90394-69f5-4237-9190-012177145e10"]'),
 bearer('--claim', 'level=4'),
 bearer('--claim', 'mfa=true'),
 bearer('--claim', 'mfa="true "'),
 bearer()]
--- error_code eval: [200, 200, 200, 200, 403, 403]
--- response_headers eval
[undef, undef, undef, undef, undef,
 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_claim"']

=== TEST 10: several claims: all of them
--- config
    location /api {
        entra_auth dev;
        entra_require_claim tid 9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        entra_require_claim idtyp app;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--app', 'job'), bearer()]
--- error_code eval: [200, 403]

=== TEST 11: requirements at server level are inherited
--- config
    entra_auth dev;
    entra_require_group staff;
    location /api { proxy_pass http://backend; }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval: [bearer('--groups', 'staff'), bearer('--groups', 'other'), '']
--- error_code eval: [200, 403, 401]

=== TEST 12: requirements at http level are inherited
--- http_config
    entra_auth dev;
    entra_require_role Orders.Read;
--- config
    location /api { proxy_pass http://backend; }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--roles', 'Orders.Read'), bearer()]
--- error_code eval: [200, 403]

=== TEST 13: a level that sets a directive replaces the inherited ones of that name
--- config
    entra_auth dev;
    entra_require_group staff;
    entra_require_group admins;
    location /api {
        entra_require_group auditors;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--groups', 'auditors'), bearer('--groups', 'staff,admins')]
--- error_code eval: [200, 403]

=== TEST 14: directives of other names still apply
--- config
    entra_auth dev;
    entra_require_group staff;
    location /api {
        entra_require_scope Orders.Write;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval: [bearer('--groups', 'staff', '--scp', 'Orders.Write'), bearer('--scp', 'Orders.Write'), bearer('--groups', 'staff')]
--- error_code eval: [200, 403, 403]

=== TEST 15: off clears an inherited requirement
--- config
    entra_auth dev;
    entra_require_group staff;
    entra_require_role Orders.Read;
    location /api {
        entra_require_group off;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--roles', 'Orders.Read'), bearer()]
--- error_code eval: [200, 403]
--- response_headers eval
[undef, 'WWW-Authenticate: Bearer realm="dev", error="insufficient_scope", error_description="missing_role"']

=== TEST 16: each claim name is its own requirement when inherited
--- config
    entra_auth dev;
    entra_require_claim idtyp app;
    entra_require_claim tid 00000000-0000-0000-0000-000000000000;
    location /api {
        entra_require_claim tid 9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        proxy_pass http://backend;
    }
    location /one {
        entra_require_claim idtyp off;
        entra_require_claim tid 9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        proxy_pass http://backend;
    }
    location /none {
        entra_require_claim off;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /one', 'GET /none']
--- more_headers eval: [bearer('--app', 'job'), bearer(), bearer(), bearer()]
--- error_code eval: [200, 403, 200, 200]

=== TEST 17: entra_auth off disables an inherited one, with its requirements
--- config
    entra_auth dev;
    entra_require_group staff;
    location /api { proxy_pass http://backend; }
    location /public {
        entra_auth off;
        proxy_pass http://backend;
    }
--- request eval: ['GET /public', 'GET /api']
--- error_code eval: [200, 401]

=== TEST 18: requirements where entra_auth is off are ignored
--- config
    location /api {
        entra_require_group staff;
        proxy_pass http://backend;
    }
--- error_code: 200

=== TEST 19: a location can switch to another provider
--- http_config
    entra_provider other {
        tenant     9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93;
        client_id  4b9e1f3a-2c7d-4e8f-a1b5-6d3c9e2f7a18;
        jwks_file  $TEST_NGINX_ENTRA_JWKS;
    }
--- config
    entra_auth dev;
    location /api { proxy_pass http://backend; }
    location /other {
        entra_auth other;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /other']
--- more_headers eval: [bearer(), bearer()]
--- error_code eval: [200, 401]

=== TEST 20: requirements apply in nested locations
--- config
    location /api {
        entra_auth dev;
        entra_require_group staff;
        location /api/admin {
            entra_require_group admins;
            proxy_pass http://backend;
        }
        proxy_pass http://backend;
    }
--- request eval: ['GET /api/x', 'GET /api/admin', 'GET /api/admin']
--- more_headers eval: [bearer('--groups', 'staff'), bearer('--groups', 'staff'), bearer('--groups', 'admins')]
--- error_code eval: [200, 403, 200]

=== TEST 22: the denial line bounds and escapes what the token had
--- config
    location /api {
        entra_auth dev;
        entra_require_role Orders.Write;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--claim', 'roles=["a\\nforged [error] line","' . ('x' x 300) . '","1","2","3","4","5","6","7","8","9","10"]')
--- error_code: 403
--- error_log eval
qr/the token has: "a\\u\{a\}forged \[error\] line" "x{96}\.\.\." "1" "2" "3" "4" "5" "6" "7" "8" and 2 more, client/
--- no_error_log eval
qr/^forged/m

=== TEST 23: the denial line says what was required and what the token had
--- config
    location /api {
        entra_auth dev;
        entra_require_role Orders.Read Orders.Admin;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--roles', 'orders.read')
--- error_code: 403
--- error_log
app roles required, any of: "Orders.Read" "Orders.Admin"; the token has: "orders.read"

=== TEST 24: for a claim, which claim
--- config
    location /api {
        entra_auth dev;
        entra_require_claim idtyp app;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer()
--- error_code: 403
--- error_log
values of the claim "idtyp" required, any of: "app"; the token has: none
