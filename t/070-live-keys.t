# Live signing keys: discovered from the IdP's metadata, shared by all workers through the
# shared zone, refreshed on an unknown kid at most once per interval, and kept when the IdP fails.
use Test::Nginx::Socket 'no_plan';
use EntraTest;

log_level('info');
master_on();
workers(2);
use_live_defaults();
run_tests();

__DATA__

=== TEST 1: keys come from the metadata, fetched once for both workers
--- request eval: ['GET /api', 'GET /api', 'GET /api', 'GET /idp/_admin/stats', 'GET /status']
--- more_headers eval: [live_bearer(), live_bearer('--ver', '1'), live_bearer(), '', '']
--- error_code eval: [200, 200, 200, 200, 200]
--- response_body_like eval
[qr/^backend/, qr/^backend/, qr/^backend/, qr/"keys":1,"metadata":2,/,
 qr/"fetch_errors":0,"fetches":1,"frontchannel_logouts":0,"logouts":0,"metadata_fetches":2,"refused_callbacks":0,"replayed_states":0,"session_microseconds":0,"sessions_accepted":0,"sign_in_challenges":0,"signins_completed":0,"signins_started":0,"verify_microseconds":[1-9]\d*\}.*"key_source":"metadata".*"last_error":null,"last_fetch":\d+/]
--- no_error_log
[error]

=== TEST 2: over HTTPS with the IdP's CA in ca_file
--- skip_eval: 1: $ENV{TEST_NGINX_USE_VALGRIND} # memcheck cannot follow ring's AES-GCM assembly (false "uninitialised" reports in TLS)
--- http_config eval
live_provider('metadata_url $TEST_NGINX_IDP_HTTPS_URL/9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93/v2.0/.well-known/openid-configuration;',
              'ca_file $TEST_NGINX_IDP_CA;')
--- more_headers eval: live_bearer()
--- error_code: 200

=== TEST 3: over HTTPS, a CA the system does not trust: 503 with Retry-After, and why in the log
--- skip_eval: 8: $ENV{TEST_NGINX_USE_VALGRIND} # timing: the 500 ms fetch timeout is too short under valgrind
--- http_config eval
live_provider('metadata_url $TEST_NGINX_IDP_HTTPS_URL/9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93/v2.0/.well-known/openid-configuration;',
              'fetch_timeout 500ms;')
--- request eval: ['GET /api', 'GET /api', 'GET /status']
--- more_headers eval: [live_bearer(), '', '']
--- error_code eval: [503, 401, 200]
--- response_headers eval: ['Retry-After: 5', 'WWW-Authenticate: Bearer realm="live"', undef]
--- response_body_like eval
[qr/503/, qr/401/, qr/"denied":\{"keys_unavailable":1,"no_token":1\}.*"kids":\[\],"last_error":"https:[^"]+","last_fetch":null/]

=== TEST 4: a rotated key is accepted with no reload, after exactly one more fetch
--- request eval: ['GET /api', 'GET /idp/_admin/publish', 'GET /api', 'GET /idp/_admin/stats']
--- more_headers eval
my $new = live_idp('add-key', '--hidden');
[live_bearer(), '', live_bearer('--key', $new), '']
--- error_code eval: [200, 200, 200, 200]
--- response_body_like eval: [qr/^backend/, qr/.*/, qr/^backend/, qr/"keys":2,/]

=== TEST 5: a burst of unknown kids causes one fetch per interval
--- request eval: ['GET /api', (map { 'GET /api' } 1 .. 100), 'GET /idp/_admin/stats']
--- more_headers eval
my $valid = live_bearer();
[$valid, (map { live_bearer('--header', qq{kid="random-$_"}) } 1 .. 100), '']
--- error_code eval: [200, (401) x 100, 200]
--- response_body_like eval: [qr/^backend/, (qr/401/) x 100, qr/"keys":2,/]
--- timeout: 10

=== TEST 6: the IdP down at start: 503 while no keys, 401 without a token, 200 once it answers
--- http_config eval
# The IdP drops requests through a closed gate, and gates start closed: down from the start.
# Retries back off (1 s, 2 s, 4 s, ...): the request after the gate opens waits up to 5 s.
live_provider('metadata_url $TEST_NGINX_IDP_URL/9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93/v2.0/.well-known/openid-configuration?gate=t6;',
              'fetch_timeout 5s;')
--- request eval: ['GET /api', 'GET /api', 'GET /idp/_admin/open?gate=t6', 'GET /api', 'GET /status']
--- more_headers eval: my $t = live_bearer(); [$t, '', '', $t, '']
--- error_code eval: [503, 401, 200, 200, 200]
--- response_body_like eval: [qr/503/, qr/401/, qr/.*/, qr/^backend/, qr/"fetch_errors":[1-4],"fetches":[2-5],.*"kids":\["[^"]+".*"last_error":"http:[^"]+","last_fetch":\d+/]
--- timeout: 15

=== TEST 7: the IdP down after keys were fetched: valid tokens still pass
--- http_config eval: live_provider('refresh_on_unknown_kid 1s;')
--- request eval: ['GET /api', 'GET /idp/_admin/mode?set=down', 'GET /api', 'GET /api', 'GET /idp/_admin/stats', 'GET /status']
--- more_headers eval: my $t = live_bearer(); [$t, '', live_bearer('--header', 'kid="unknown"'), $t, '', '']
--- error_code eval: [200, 200, 401, 200, 200, 200]
--- response_body_like eval
[qr/^backend/, qr/.*/, qr/401/, qr/^backend/, qr/"keys":1,"metadata":3,/, qr/"fetch_errors":1,"fetches":2,.*"last_error":"http:[^"]+"/]

=== TEST 8: a key set that is not JSON is refused and the old keys kept
--- http_config eval: live_provider('refresh_on_unknown_kid 1s;')
--- request eval: ['GET /api', 'GET /idp/_admin/mode?set=garbage&kind=text', 'GET /api', 'GET /api', 'GET /idp/_admin/stats', 'GET /status']
--- more_headers eval: my $t = live_bearer(); [$t, '', live_bearer('--header', 'kid="unknown"'), $t, '', '']
--- error_code eval: [200, 200, 401, 200, 200, 200]
--- response_body_like eval: [qr/^backend/, qr/.*/, qr/401/, qr/^backend/, qr/"keys":2,/, qr/"fetch_errors":1.*"last_error":"[^"]*not a usable key set: not a JSON object/]
=== TEST 9: a key set that is empty is refused and the old keys kept
--- skip_eval: 12: $ENV{TEST_NGINX_USE_VALGRIND} # timing: under valgrind the retry after the refused fetch can come before the counters are read
--- http_config eval: live_provider('refresh_on_unknown_kid 1s;')
--- request eval: ['GET /api', 'GET /idp/_admin/mode?set=garbage&kind=empty', 'GET /api', 'GET /api', 'GET /idp/_admin/stats', 'GET /status']
--- more_headers eval: my $t = live_bearer(); [$t, '', live_bearer('--header', 'kid="unknown"'), $t, '', '']
--- error_code eval: [200, 200, 401, 200, 200, 200]
--- response_body_like eval: [qr/^backend/, qr/.*/, qr/401/, qr/^backend/, qr/"keys":2,/, qr/"fetch_errors":1.*"last_error":"[^"]*no usable signing key \(the set is empty\)/]
=== TEST 10: a key set that is 4 MiB is refused and the old keys kept
--- skip_eval: 12: $ENV{TEST_NGINX_USE_VALGRIND} # timing: under valgrind the retry after the refused fetch can come before the counters are read
--- http_config eval: live_provider('refresh_on_unknown_kid 1s;')
--- request eval: ['GET /api', 'GET /idp/_admin/mode?set=garbage&kind=huge', 'GET /api', 'GET /api', 'GET /idp/_admin/stats', 'GET /status']
--- more_headers eval: my $t = live_bearer(); [$t, '', live_bearer('--header', 'kid="unknown"'), $t, '', '']
--- error_code eval: [200, 200, 401, 200, 200, 200]
--- response_body_like eval: [qr/^backend/, qr/.*/, qr/401/, qr/^backend/, qr/"keys":2,/, qr/"fetch_errors":1.*"last_error":"[^"]*larger than 1048576 bytes/]
=== TEST 11: a key set that is gzip-encoded unasked is refused and the old keys kept
--- skip_eval: 12: $ENV{TEST_NGINX_USE_VALGRIND} # timing: under valgrind the retry after the refused fetch can come before the counters are read
--- http_config eval: live_provider('refresh_on_unknown_kid 1s;')
--- request eval: ['GET /api', 'GET /idp/_admin/mode?set=garbage&kind=gzip', 'GET /api', 'GET /api', 'GET /idp/_admin/stats', 'GET /status']
--- more_headers eval: my $t = live_bearer(); [$t, '', live_bearer('--header', 'kid="unknown"'), $t, '', '']
--- error_code eval: [200, 200, 401, 200, 200, 200]
--- response_body_like eval: [qr/^backend/, qr/.*/, qr/401/, qr/^backend/, qr/"keys":2,/, qr/"fetch_errors":1.*"last_error":"[^"]*not a usable key set/]

=== TEST 12: entra_status: key ids, fetch times, counters, as JSON (the cache is per worker: two workers may each miss once)
--- config
    location /api { entra_auth live; entra_require_group admins; proxy_pass http://backend; }
    location = /status { entra_status; }
--- request eval: ['GET /api', 'GET /api', 'GET /api', 'GET /api', 'GET /status']
--- more_headers eval: my $t = live_bearer('--groups', 'admins'); [$t, $t, live_bearer(), '', '']
--- error_code eval: [200, 200, 403, 401, 200]
--- response_headers eval: [undef, undef, undef, undef, 'Content-Type: application/json']
--- response_body_like eval
[qr/^backend/, qr/^backend/, qr/403/, qr/401/,
 qr/^\{"module":\{"nginx":"1\.\d+\.\d+","signatures":"aws-lc-rs","version":"\d+\.\d+\.\d+"\},"providers":\[\{"counters":\{"allowed":2,"cache_hits":(?:0,"cache_misses":3|1,"cache_misses":2),"fetch_errors":0,"fetches":1,"frontchannel_logouts":0,"logouts":0,"metadata_fetches":2,"refused_callbacks":0,"replayed_states":0,"session_microseconds":0,"sessions_accepted":0,"sign_in_challenges":0,"signins_completed":0,"signins_started":0,"verify_microseconds":[1-9]\d*\},"denied":\{"missing_group":1,"no_token":1\},"key_source":"metadata","kids":\["[^"]+"(,"[^"]+")*\],"last_error":null,"last_fetch":\d+,"name":"live","next_refresh":\d+\}\]\}$/]

=== TEST 13: entra_status in Prometheus' text format, for key-file providers too
--- http_config eval: live_provider() . provider()
--- config
    location /api { entra_auth live; proxy_pass http://backend; }
    location /file { entra_auth dev; proxy_pass http://backend; }
    location = /status { entra_status; }
--- request eval: ['GET /api', 'GET /file', 'GET /status?format=prometheus']
--- more_headers eval: [live_bearer(), bearer(), '']
--- error_code eval: [200, 200, 200]
--- response_body_like eval
[qr/^backend/, qr/^backend/,
 qr/# TYPE entra_allowed_total counter\nentra_allowed_total\{provider="live"\} 1\nentra_allowed_total\{provider="dev"\} 1\n.*# TYPE entra_verify_microseconds_total counter\nentra_verify_microseconds_total\{provider="live"\} [1-9]\d*\nentra_verify_microseconds_total\{provider="dev"\} [1-9]\d*\n.*entra_fetches_total\{provider="live"\} 1\nentra_fetches_total\{provider="dev"\} 0\n.*entra_denied_total\{provider="dev",reason="expired"\} 0\n/s]

=== TEST 14: a redirect is not followed: the metadata names every URL, and Entra does not redirect
--- skip_eval: 4: $ENV{TEST_NGINX_USE_VALGRIND} # timing: under valgrind the refused fetch can end after the 500 ms the request waits
--- http_config eval
live_provider('metadata_url $TEST_NGINX_IDP_URL/redirect?to=$TEST_NGINX_IDP_URL/9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93/v2.0/.well-known/openid-configuration;',
              'fetch_timeout 500ms;')
--- request eval: ['GET /api', 'GET /status']
--- more_headers eval: [live_bearer(), '']
--- error_code eval: [503, 200]
--- response_body_like eval
[qr/503/, qr/"kids":\[\],"last_error":"http:[^"]+redirect[^"]+: HTTP status 302","last_fetch":null/]

=== TEST 15: entra_status shows the module's build, and a histogram of judging times
# One token judged: once, or twice when the request came before the first keys (judged, then
# judged again once they arrived); the buckets, the sum and the count agree either way.
--- config
    location /api { entra_auth live; proxy_pass http://backend; }
    location = /status { entra_status; }
--- request eval: ['GET /api', 'GET /status?format=prometheus']
--- more_headers eval: [live_bearer(), '']
--- error_code eval: [200, 200]
--- response_body_like eval
[qr/^backend/,
 qr/\A(?=.*^entra_build_info\{version="\d+\.\d+\.\d+",nginx="1\.\d+\.\d+",signatures="aws-lc-rs"\} 1$)(?=.*^# TYPE entra_judging_seconds histogram$)(?=.*^entra_judging_seconds_count\{provider="live",judged="token"\} ([12])$)(?=.*^entra_judging_seconds_bucket\{provider="live",judged="token",le="0\.00001"\} [012]$)(?=.*^entra_judging_seconds_bucket\{provider="live",judged="token",le="0\.01"\} \1$)(?=.*^entra_judging_seconds_bucket\{provider="live",judged="token",le="\+Inf"\} \1$)(?=.*^entra_judging_seconds_sum\{provider="live",judged="token"\} 0\.\d+$)(?=.*^entra_judging_seconds_count\{provider="live",judged="session"\} 0$)/ms]
