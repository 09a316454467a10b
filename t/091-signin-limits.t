# The sign-in work's limits, at the limit and just past it: a token endpoint answer of 256 KiB
# is read and one byte more is refused with 503 idp_unavailable; at most 64 callbacks per worker
# wait for their code exchange, the next is refused at once with 503, and the waiting ones all
# sign in once the exchanges complete; a client address makes at most callbacks_per_minute.
use strict;
use warnings;

use Test::More;
use Time::HiRes qw(time);
use EntraTest;
use EntraBrowser;


my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 150;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-signin-limits';
my $origin = "http://127.0.0.1:$port";
my ($answer_limit, $callback_limit) = (256 * 1024, 64);
my $debug = `$ENV{TEST_NGINX_BINARY} -V 2>&1` =~ /--with-debug/;

signin_prefix($prefix);
browser_origin($origin);
write_nginx_conf($prefix, $port,
    live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'fetch_timeout 20s;',
        'callbacks_per_minute off;')
    . (live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'redirect_uri /rated/callback;',
        'frontchannel_logout_uri /rated/logout;', 'session_cookie rated;', 'callbacks_per_minute 3;')
        =~ s/entra_provider live/entra_provider rated/r),
    connections => 512, level => $debug ? 'debug' : 'info',
    server => "        location /app { entra_auth live session; proxy_pass http://127.0.0.1:$port/backend; }\n"
        . "        location /rated { entra_auth rated session; proxy_pass http://127.0.0.1:$port/backend; }\n"
        . "        location = /status { entra_status; }\n");
run_nginx($prefix, $port, 'approve?user=alice');

# --- The token endpoint's answer: the ID token's JSON padded to the limit, then one byte past it.
idp_admin("mode?set=padded&bytes=$answer_limit");
my ($at_limit) = sign_in('/app');
is($at_limit->{status}, 302, "an answer of $answer_limit bytes is read and signs in");
idp_admin('mode?set=padded&bytes=' . ($answer_limit + 1));
my ($past_limit) = sign_in('/app');
is($past_limit->{status}, 503, 'one byte more ends the sign-in with 503');
like($past_limit->{content}, qr/idp_unavailable/, 'naming idp_unavailable');
like(log_text(), qr/sign-in failed: idp_unavailable \(provider "live"\): the token endpoint cannot be used: an answer larger than $answer_limit bytes/, 'the log says the answer was too large');
idp_admin('mode?set=normal');

# --- Parked callbacks: each attempt approved at the IdP, its callback sent while the token
# endpoint holds every exchange.
sub approved_callback {
    my $jar = {};
    my $start = navigate('/app', $jar);
    apply_cookies($jar, $start);
    my $authorize = request('GET', $start->{headers}{location});
    die "the IdP did not approve: $authorize->{status}\n" unless $authorize->{status} == 302;
    return ($authorize->{headers}{location}, $jar);
}

# A callback sent without waiting for its answer.
sub send_callback { my ($url, $jar) = @_; send_request('GET', $url, %NAVIGATION, Cookie => cookie_header(%$jar)) }

SKIP: {
    # The module says at debug level how many callbacks wait: the place to know they all do.
    skip 'nginx was built without --with-debug', 7 unless $debug;
    my @attempts = map { [approved_callback()] } 0 .. $callback_limit;
    idp_admin('hold?path=/token');
    my @waiting = map { send_callback(@$_) } @attempts[0 .. $callback_limit - 1];
    my $deadline = time + 20;
    my $parked = 0;
    while (time < $deadline) {
        ($parked) = (log_text() =~ /sign-in callback waits for its code exchange \((\d+) in this worker\)/g)[-1];
        last if ($parked // 0) == $callback_limit;
        select(undef, undef, undef, 0.01);
    }
    is($parked, $callback_limit, "$callback_limit callbacks wait for their code exchange");

    my $refused = navigate($attempts[$callback_limit][0], $attempts[$callback_limit][1]);
    is($refused->{status}, 503, 'the next callback is refused at once with 503');
    like($refused->{content}, qr/idp_unavailable/, 'naming idp_unavailable');
    like(log_text(), qr/sign-in failed: idp_unavailable \(provider "live"\): too many sign-ins at once/, 'and the log says why');

    idp_admin('release');
    my %status;
    for my $sock (@waiting) {
        my ($code) = read_answer($sock, 30) =~ m{^HTTP/1\.1 (\d+) };
        $status{$code // 'none'}++;
    }
    is($status{302}, $callback_limit, 'every waiting callback signs in once its exchange completes') or diag explain \%status;
    my ($after) = sign_in('/app');
    is($after->{status}, 302, 'and the next sign-in does not wait for a free place');
}

# --- Callbacks per client address and minute (callbacks_per_minute 3): a fresh state costs an
# attacker one navigation, so the callbacks themselves are bounded, before the token endpoint.
my @rated = map { (sign_in('/rated'))[0]->{status} } 1 .. 4;
is_deeply([@rated[0 .. 2]], [302, 302, 302], 'three callbacks in a minute sign in');
is($rated[3], 503, 'the fourth from the same address is refused with 503');
like(log_text(), qr/sign-in failed: idp_unavailable \(provider "rated"\): too many sign-in callbacks from this address/,
    'and the log says why');
my $metrics = request('GET', '/status?format=prometheus')->{content};
like($metrics, qr/^entra_refused_callbacks_total\{provider="rated"\} 1$/m, 'entra_status counts it');
# Each of the four began with a navigation without a session: a sign-in challenge, no denial.
like($metrics, qr/^entra_sign_in_challenges_total\{provider="rated"\} 4$/m, 'first visits are counted as sign-in challenges');
like($metrics, qr/^entra_denied_total\{provider="rated",reason="no_session"\} 0$/m, 'not as denials');
unlike(log_text(), qr/access denied: no_session \(provider "rated"/, 'nor logged as denials');
my $json = request('GET', '/status', {}, Accept => 'application/json')->{content};
like($json, qr/"name":"rated"/, 'the JSON form');
like($json, qr/"sign_in_challenges":4,.*"name":"rated"/, 'counts them too');
unlike($json, qr/"denied":\{[^}]*"no_session"[^}]*\},"key_source":"metadata","kids":\[[^]]*\],"last_error":null,"last_fetch":\d+,"name":"rated"/,
    'and no no_session denial');

unlike(log_text(), qr/\[(alert|crit|emerg)\]/, 'no alert, crit or emerg line in the error log');

done_testing();
