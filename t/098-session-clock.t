# A session's last use, with nginx's wall clock moved on by libfaketime (the IdP's is not): a
# session in use with an idle timeout is re-sealed once a minute, also when it is judged in an
# auth_request subrequest (the cookie reaches the main response), and never for a request that
# is refused as cross-origin.
use strict;
use warnings;

use Test::More;
use EntraTest;
use EntraBrowser;

plan skip_all => 'libfaketime is not installed (scripts/test installs it)' unless faketime_library();

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 160;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-session-clock';
my $origin = "http://127.0.0.1:$port";

signin_prefix($prefix);
browser_origin($origin);
write_nginx_conf($prefix, $port,
    live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'session_idle_timeout 10m;'),
    main => $FAKETIME_ENV, server => <<"LOCATIONS");
        location /app { entra_auth live session; proxy_pass http://127.0.0.1:$port/who; }
        location /via-auth { auth_request /app/check; proxy_pass http://127.0.0.1:$port/who; }
        location /who { return 200 "in\\n"; }
LOCATIONS

run_nginx_on_clock($prefix, $port, 'approve?user=alice');

sub script { my ($path, $jar, %h) = @_; request('GET', $path, $jar, Accept => 'application/json', %h) }
sub session_cookies { grep { /^entra=/ } set_cookies($_[0]) }

my (undef, $jar) = sign_in('/app');
my $first = script('/app', $jar);
is($first->{status}, 200, 'a fresh session');
is(scalar(session_cookies($first)), 0, 'is not re-sealed within its first minute');

# Past the re-seal interval (a minute), well within the idle timeout.
set_clock('+90');
my $refused = request('POST', '/app', $jar, Origin => 'http://evil.example');
is($refused->{status}, 403, 'a cross-origin POST is refused');
is(scalar(session_cookies($refused)), 0, 'and gets no re-sealed session cookie');

my $via = script('/via-auth', $jar);
is($via->{status}, 200, 'an auth_request subrequest lets the session in');
my ($resealed) = session_cookies($via);
ok($resealed, 'and its re-sealed session cookie reaches the main response');
isnt(($resealed // '') =~ /^entra=([^;]*)/ ? $1 : '', $jar->{entra}, 'a new value');
apply_cookies($jar, $via);
is(script('/app', $jar)->{status}, 200, 'which opens');

# Eleven minutes after the re-seal would be past the idle timeout; the re-sealed one counts from now.
set_clock('+660');
is(script('/app', $jar)->{status}, 200, 'the re-sealed session is still in use 9.5 minutes later');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
