# A panic inside the module never takes a worker down (a worker that aborted could not answer at
# all): every entry point from nginx has one guard that turns it into a 500 and an [alert] line. The panics are forced by NGX_ENTRA_TEST_PANIC,
# which only debug builds of the module read (scripts/test builds those).
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
master_on();
use_defaults();
run_tests();

__DATA__

=== TEST 1: a panic in the access check: 500, and the same worker answers the next request
--- main_config
    env NGX_ENTRA_TEST_PANIC=access;
--- request eval: ['GET /api', 'GET /api']
--- more_headers eval: [bearer(), bearer()]
--- error_code eval: [500, 500]
--- error_log
[alert]
entra: internal error in the access check
--- no_error_log
exited on signal

=== TEST 2: a panic in a variable: nginx takes the failed variable as not found
--- main_config
    env NGX_ENTRA_TEST_PANIC=variable;
--- config
    location /who { return 200 "oid=$entra_oid\n"; }
--- request
GET /who
--- error_code: 200
--- response_body
oid=
--- error_log
entra: internal error in a variable
--- no_error_log
exited on signal

=== TEST 3: a panic in entra_status: 500
--- main_config
    env NGX_ENTRA_TEST_PANIC=status;
--- config
    location = /status { entra_status; }
--- request
GET /status
--- error_code: 500
--- error_log
entra: internal error in entra_status
--- no_error_log
exited on signal

=== TEST 4: without the trigger nothing panics
--- config
    location /api { entra_auth dev; proxy_pass http://backend; }
    location /who { return 200 "oid=$entra_oid\n"; }
    location = /status { entra_status; }
--- request eval: ['GET /api', 'GET /who', 'GET /status']
--- more_headers eval: [bearer(), '', '']
--- error_code eval: [200, 200, 200]
--- no_error_log
internal error
