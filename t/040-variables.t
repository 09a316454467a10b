# $entra_* variables: in proxy_set_header, add_header, log_format and map, and after internal
# redirects (error_page, try_files, named locations).
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
use_defaults();
run_tests();

__DATA__

=== TEST 1: proxy_set_header passes the verified identity to the backend
--- config
    location /api {
        entra_auth dev;
        proxy_set_header X-Oid $entra_oid;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--user', 'bob')
--- response_body eval: "backend /api oid=" . idp_oid('bob') . "\n"

=== TEST 2: every identity variable in add_header
--- config
    location /api {
        entra_auth dev;
        add_header X-Oid $entra_oid;
        add_header X-Tid $entra_tid;
        add_header X-Upn $entra_upn;
        add_header X-Name $entra_name;
        add_header X-Email $entra_email;
        add_header X-Groups $entra_groups;
        add_header X-Roles $entra_roles;
        add_header X-Scopes $entra_scopes;
        add_header X-App $entra_app_id;
        add_header X-Ver $entra_token_version;
        add_header X-Sub-Set "${entra_sub}!";
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--user', 'dana', '--groups', 'g1,g2', '--roles', 'A,B', '--scp', 'read  write')
--- response_headers eval
"X-Tid: $EntraTest::TENANT
X-Upn: dana\@contoso.example
X-Name: dana
X-Email: dana\@contoso.example
X-Groups: g1,g2
X-Roles: A,B
X-Scopes: read write
X-App: 0c7d2e9a-5f1b-4c3d-8e6a-9b2f4d1c7e05
X-Ver: 2.0
X-Oid: " . idp_oid('dana')
--- response_headers_like
X-Sub-Set: [A-Za-z0-9_-]{22}!

=== TEST 3: v1 tokens: upn and appid
--- config
    location /api {
        entra_auth dev;
        add_header X-Upn $entra_upn;
        add_header X-App $entra_app_id;
        add_header X-Ver $entra_token_version;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--ver', '1', '--user', 'erin')
--- response_headers
X-Upn: erin@contoso.example
X-App: 0c7d2e9a-5f1b-4c3d-8e6a-9b2f4d1c7e05
X-Ver: 1.0

=== TEST 4: $entra_claim_<name>: strings, arrays, numbers, booleans and objects
--- config
    location /api {
        entra_auth dev;
        add_header X-Idtyp $entra_claim_idtyp;
        add_header X-Wids $entra_claim_wids;
        add_header X-Level $entra_claim_level;
        add_header X-Mfa $entra_claim_mfa;
        add_header X-Obj $entra_claim_obj;
        add_header X-Absent "[$entra_claim_absent]";
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--app', 'job', '--claim', 'wids=["a","b",3]', '--claim', 'level=4', '--claim', 'mfa=true', '--claim', 'obj={"k":"v"}')
--- response_headers
X-Idtyp: app
X-Wids: a,b,3
X-Level: 4
X-Mfa: true
X-Obj: {"k":"v"}
X-Absent: []

=== TEST 5: control characters in a claim never split a header line
--- config
    location /api {
        entra_auth dev;
        proxy_set_header X-Oid $entra_name;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--claim', 'name="eve\r\nX-Injected: 1"')
--- response_body
backend /api oid=eve  X-Injected: 1

=== TEST 6: $entra_error on a denial, in add_header always
--- config
    location /api {
        entra_auth dev;
        entra_require_role Admin;
        add_header X-Entra-Error $entra_error always;
        add_header X-Entra-Oid $entra_oid always;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api']
--- more_headers eval: ['', bearer('--exp', '-600'), bearer('--user', 'frank')]
--- error_code eval: [401, 401, 403]
--- response_headers eval
['X-Entra-Error: no_token', 'X-Entra-Error: expired', "X-Entra-Error: missing_role\nX-Entra-Oid: " . idp_oid('frank')]

=== TEST 7: $entra_error is empty when access is granted, and variables are empty where no check ran
--- config
    location /api {
        entra_auth dev;
        add_header X-Err "[$entra_error]";
        proxy_pass http://backend;
    }
    location /open {
        add_header X-Oid "[$entra_oid]";
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /open']
--- more_headers eval: [bearer(), bearer()]
--- response_headers eval: ['X-Err: []', 'X-Oid: []']

=== TEST 8: log_format records who was let in and who was refused, and why
--- http_config
    log_format entra '$status oid=$entra_oid error=$entra_error groups=$entra_groups';
--- config
    location /api {
        entra_auth dev;
        entra_require_group staff;
        access_log logs/entra.log entra;
        proxy_pass http://backend;
    }
    location = /entra.log {
        root logs;
    }
--- request eval: ['GET /api', 'GET /api', 'GET /api', 'GET /entra.log']
--- more_headers eval: [bearer('--user', 'gus', '--groups', 'staff'), bearer('--user', 'hal'), 'Authorization: Bearer x.y.z', '']
--- error_code eval: [200, 403, 401, 200]
--- response_body_like eval
[qr/^backend/, qr/403 Forbidden/, qr/401 Authorization Required/,
 qr/^\Q200 oid=${\ idp_oid('gus')} error=- groups=staff
403 oid=${\ idp_oid('hal')} error=missing_group groups=-
401 oid=- error=malformed groups=-\E\n$/]

=== TEST 9: map on a variable
--- http_config
    map $entra_groups $is_admin {
        ~(^|,)admins(,|$) yes;
        default no;
    }
--- config
    location /api {
        entra_auth dev;
        add_header X-Admin $is_admin;
        proxy_pass http://backend;
    }
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer('--groups', 'staff,admins'), bearer('--groups', 'superadmins')]
--- response_headers eval: ['X-Admin: yes', 'X-Admin: no']

=== TEST 10: an error page shows who was refused and why
--- config
    location /api {
        entra_auth dev;
        entra_require_group staff;
        error_page 401 403 /denied;
        proxy_pass http://backend;
    }
    location = /denied {
        internal;
        proxy_set_header X-Oid "$entra_error $entra_oid";
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--user', 'ivy')
--- error_code: 403
--- response_body eval: "backend /denied oid=missing_group " . idp_oid('ivy') . "\n"
--- grep_error_log: entra: access denied
--- grep_error_log_out
entra: access denied

=== TEST 11: an error page after a request with no token
--- config
    location /api {
        entra_auth dev;
        error_page 401 /denied;
        proxy_pass http://backend;
    }
    location = /denied {
        internal;
        proxy_set_header X-Oid "$entra_error";
        proxy_pass http://backend;
    }
--- error_code: 401
--- response_body
backend /denied oid=no_token
--- grep_error_log: entra: access denied
--- grep_error_log_out
entra: access denied

=== TEST 12: variables survive error_page into a location that reads them
--- config
    location /api {
        entra_auth dev;
        entra_require_group staff;
        error_page 403 = @why;
        proxy_pass http://backend;
    }
    location @why {
        add_header X-Why $entra_error always;
        add_header X-Who $entra_upn always;
        return 403 "refused\n";
    }
--- more_headers eval: bearer('--user', 'jo')
--- error_code: 403
--- response_headers
X-Why: missing_group
X-Who: jo@contoso.example

=== TEST 13: try_files into a named location keeps the identity
--- config
    location /api {
        entra_auth dev;
        try_files /nonexistent @backend;
    }
    location @backend {
        entra_auth dev;
        proxy_set_header X-Oid $entra_oid;
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--user', 'kim')
--- response_body eval: "backend /api oid=" . idp_oid('kim') . "\n"

=== TEST 14: set in the rewrite phase runs before the check and sees nothing
--- config
    location /api {
        entra_auth dev;
        set $early "[$entra_oid]";
        add_header X-Early $early;
        add_header X-Late "[$entra_upn]";
        proxy_pass http://backend;
    }
--- more_headers eval: bearer('--user', 'lee')
--- response_headers
X-Early: []
X-Late: [lee@contoso.example]
