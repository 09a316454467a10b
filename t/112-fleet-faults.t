# A fleet's store misbehaving: Redis restarted empty (the instances tell it again what they hold
# and read from the start), a server answering what is not Redis's protocol, a password Redis
# refuses, a TLS certificate that does not verify (and one that does, with ca_file), and a reload
# that removes the store. Requests are answered as without a store meanwhile; one error line a
# minute names the store and why, never the password. Waits poll entra_status counters.
use strict;
use warnings;

use File::Copy qw(copy);
use File::Path qw(make_path remove_tree);
use IO::Socket::INET;
use JSON::PP qw(decode_json);
use Test::More;
use Time::HiRes qw(time);
use EntraTest;
use EntraBrowser;

my $base = ($ENV{TEST_NGINX_PORT} || 1984) + 250;
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-fleet-faults';
my %redis_port = (plain => $base + 10, auth => $base + 11, tls => $base + 12, other => $base + 15);
my $garbage_port = $base + 13;
my $silent_port = $base + 14;
my $certs = File::Spec->rel2abs("$root-certs");
remove_tree($certs);
make_path($certs);

# A certificate authority of the test's own, and a certificate it signed for 127.0.0.1.
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca -keyout $certs/ca.key -out $certs/ca.pem "
    . ">/dev/null 2>&1") == 0 or die "openssl: the CA\n";
system("openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout $certs/key.pem -out $certs/server.csr "
    . ">/dev/null 2>&1") == 0 or die "openssl: the request\n";
open my $ext, '>', "$certs/server.ext" or die $!;
print $ext "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
close $ext;
system("openssl x509 -req -in $certs/server.csr -CA $certs/ca.pem -CAkey $certs/ca.key -CAcreateserial -days 2 "
    . "-extfile $certs/server.ext -out $certs/cert.pem >/dev/null 2>&1") == 0 or die "openssl: the certificate\n";

# Redis servers on loopback ports of their own, without persistence: a restart is empty.
my %redis_pid;
sub start_redis {
    my ($name, @extra) = @_;
    my $dir = "$root-redis-$name";
    remove_tree($dir);
    make_path($dir);
    my $pid = fork // die;
    if (!$pid) {
        open STDOUT, '>>', "$dir/redis.log";
        my @port = $name eq 'tls' ? ('--port', 0, '--tls-port', $redis_port{tls}, '--tls-cert-file', "$certs/cert.pem",
            '--tls-key-file', "$certs/key.pem", '--tls-auth-clients', 'no') : ('--port', $redis_port{$name});
        exec 'redis-server', @port, '--bind', '127.0.0.1', '--dir', $dir, '--save', '', '--appendonly', 'no', @extra
            or die;
    }
    my $deadline = time + 10;
    until (IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $redis_port{$name})) {
        die "redis-server $name did not start\n" if time > $deadline;
        select undef, undef, undef, 0.02;
    }
    $redis_pid{$name} = $pid;
}
sub stop_redis { my ($name) = @_; kill 'TERM', $redis_pid{$name}; waitpid $redis_pid{$name}, 0 }
start_redis('plain');
start_redis('auth', '--requirepass', 'the-right-password');
start_redis('tls');
END { kill 'TERM', $_ for values %redis_pid }

# A server that answers every connection with what is not Redis's protocol.
my $garbage = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $garbage_port, Listen => 16, ReuseAddr => 1)
    or die "cannot listen: $!";
my $garbage_pid = fork // die;
if (!$garbage_pid) {
    while (my $client = $garbage->accept) {
        print $client "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        close $client;
    }
    exit 0;
}
close $garbage;
END { kill 'TERM', $garbage_pid if $garbage_pid }

# A server that accepts and never answers: a store too slow to be waited for.
my $silent = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $silent_port, Listen => 16, ReuseAddr => 1)
    or die "cannot listen: $!";
my $silent_pid = fork // die;
if (!$silent_pid) {
    my @held;
    while (my $client = $silent->accept) { push @held, $client }
    exit 0;
}
close $silent;
END { kill 'TERM', $silent_pid if $silent_pid }

my %port = (a => $base, b => $base + 2, garbage => $base + 3, auth => $base + 4, tls => $base + 5, ca => $base + 6,
    silent => $base + 7, e => $base + 8);
my %prefix = map { $_ => "$root-$_" } keys %port;
signin_prefix($prefix{a});
for my $name (grep { $_ ne 'a' } keys %port) {
    remove_tree($prefix{$name});
    make_path("$prefix{$name}/conf", "$prefix{$name}/logs");
    for my $file (qw(secret session.keys)) {
        copy("$prefix{a}/conf/$file", "$prefix{$name}/conf/$file") or die $!;
        chmod 0600, "$prefix{$name}/conf/$file";
    }
}
open my $pass, '>', "$prefix{auth}/conf/redis.pass" or die $!;
print $pass "a-wrong-password\n";
close $pass;
chmod 0600, "$prefix{auth}/conf/redis.pass";
my %store = (
    a => "redis://127.0.0.1:$redis_port{plain}",
    b => "redis://127.0.0.1:$redis_port{plain}",
    garbage => "redis://127.0.0.1:$garbage_port",
    auth => "redis://127.0.0.1:$redis_port{auth} password_file=redis.pass",
    tls => "rediss://127.0.0.1:$redis_port{tls}",
    ca => "rediss://127.0.0.1:$redis_port{tls} ca_file=$certs/ca.pem",
    silent => "redis://127.0.0.1:$silent_port",
    e => "redis://127.0.0.1:$redis_port{other}",
);
sub configure {
    my ($name, $with_store) = @_;
    my $provider = ($with_store ? "    entra_shared_store $store{$name};\n" : '')
        . live_provider('client_secret_file secret;', 'session_key_file session.keys;');
    write_nginx_conf($prefix{$name}, $port{$name}, $provider, server => <<"LOCATIONS");
        location /app { entra_auth live session; proxy_pass http://127.0.0.1:$port{$name}/who; }
        location /who { return 200 "who=\$entra_oid\\n"; }
        location = /status { entra_status; }
LOCATIONS
}
configure($_, 1) for keys %port;
browser_origin("http://127.0.0.1:$port{a}");
my %pid = (a => run_nginx($prefix{a}, $port{a}, 'approve?user=alice'));
$pid{$_} = start_nginx($prefix{$_}, 'conf/nginx.conf', $port{$_}) for grep { $_ !~ /^[ae]$/ } keys %port;
END { kill 'TERM', $_ for grep { $_ } map { $pid{$_} } grep { $_ ne 'a' } keys %pid }

sub at { my ($name, $path) = @_; "http://127.0.0.1:$port{$name}$path" }
sub status_at { my ($name, $jar) = @_; request('GET', at($name, '/app'), $jar, Accept => 'application/json')->{status} }
sub status_of {
    my ($name) = @_;
    my $status = eval { decode_json(request('GET', at($name, '/status'))->{content}) } or return {};
    return { %{ $status->{providers}[0]{fleet} // {} }, store => $status->{store} // {} };
}
# Polls until $test (given instance $name's status) holds, at most $seconds.
sub wait_until {
    my ($name, $seconds, $test) = @_;
    my $deadline = time + $seconds;
    while (time < $deadline) {
        return 1 if $test->(status_of($name));
        select undef, undef, undef, 0.05;
    }
    return 0;
}
sub log_of { my ($name) = @_; open my $in, '<', "$prefix{$name}/logs/error.log" or return ''; local $/; <$in> }
sub sid_of { my ($log) = @_; ($log =~ /signed in: provider "live", oid \S+, tid \S+, sid ([0-9a-f-]{36})/g)[-1] }

ok(wait_until($_, 5, sub { ($_[0]{store}{state} // '') eq 'up' }), "$_ reaches its store") for qw(a b ca);

# --- Redis restarted empty.
my (undef, $alice) = sign_in('/app');
my $alice_sid = sid_of(log_text());
my $received = status_of('b')->{received};
is(request('GET', at('a', "/.entra/logout?sid=$alice_sid"))->{status}, 200, 'a sign-out at A');
ok(wait_until('b', 2, sub { $_[0]{received} > $received }), 'B reads it');
idp_admin('approve?user=bob');
my (undef, $bob) = sign_in('/app');
my $bob_sid = sid_of(log_text());
my $rounds = status_of('a')->{store}{rounds};
stop_redis('plain');
start_redis('plain');
ok(wait_until('a', 5, sub { $_[0]{store}{rounds} > $rounds + 1 && $_[0]{store}{state} eq 'up' }), 'A finds Redis back');
like(log_of('a'), qr/\[info\] .*entra_shared_store "redis:\/\/127\.0\.0\.1:$redis_port{plain}\/0" is another or restarted: telling it again/,
    'A notices that it restarted (its run_id)');
my $confirmed = status_of('b')->{confirmed};
is(request('GET', at('b', "/.entra/logout?sid=$bob_sid"))->{status}, 200, 'a front-channel call at B for a sid A issued before');
ok(wait_until('b', 8, sub { $_[0]{confirmed} > $confirmed }), 'the store confirms it: A told it again');
ok(wait_until('a', 3, sub { $_[0]{signed_out} >= 2 }), 'A reads that sign-out');
is(status_at('a', $bob), 401, 'the session is refused at A');
kill 'QUIT', $pid{b};
waitpid $pid{b}, 0;
$pid{b} = start_nginx($prefix{b}, 'conf/nginx.conf', $port{b});
is(status_at('b', $alice), 401, 'B, restarted, still refuses the sign-out made before Redis restarted (A told it again)');
is(status_at('b', $bob), 401, 'and the one after');

# --- A server that is not Redis: requests are answered as without a store.
ok(wait_until('garbage', 10, sub { ($_[0]{store}{failed_rounds} // 0) >= 3 }), 'rounds with the fake server fail');
my $g = status_of('garbage');
is($g->{store}{state}, 'down', 'entra_status shows the store down');
like($g->{store}{last_error}, qr/not Redis's protocol|cannot connect/, 'with the last error');
my @lines = log_of('garbage') =~ /(\[error\] .*entra_shared_store "redis:\/\/127\.0\.0\.1:$garbage_port\/0" did not answer)/g;
is(scalar @lines, 1, 'one error line a minute, not one per round');
browser_origin("http://127.0.0.1:$port{garbage}");
idp_admin('approve?user=dana');
my (undef, $dana) = sign_in('/app');
is(status_at('garbage', $dana), 200, 'a session signs in and is accepted there');
my $dana_sid = sid_of(log_of('garbage'));
is(request('GET', at('garbage', "/.entra/logout?sid=$dana_sid"))->{status}, 200, 'its front-channel call');
is(status_at('garbage', $dana), 401, 'ends it at once: the instance issued it');

# --- A store that never answers: requests wait for it at most fetch_timeout (3s) after a start,
# then are judged by the instance's own records; the rounds time out.
browser_origin("http://127.0.0.1:$port{silent}");
my (undef, $quiet) = sign_in("/app");
my $started = time;
is(status_at('silent', $quiet), 200, 'a session is accepted while the store says nothing');
cmp_ok(time - $started, '<', 3.5, 'without waiting past fetch_timeout after the start');
ok(wait_until('silent', 15, sub { ($_[0]{store}{failed_rounds} // 0) >= 1 }), 'the round times out');
like(status_of('silent')->{store}{last_error}, qr/no answer in time/, 'and says so');

# --- A password Redis refuses, a certificate that does not verify.
ok(wait_until('auth', 10, sub { ($_[0]{store}{failed_rounds} // 0) >= 1 }), 'the store refuses the password');
like(status_of('auth')->{store}{last_error}, qr/credentials|WRONGPASS|invalid username-password/i, 'and says so');
like(log_of('auth'), qr/\[error\] .*entra_shared_store "redis:\/\/127\.0\.0\.1:$redis_port{auth}\/0" did not answer: refused the credentials/,
    'an error line names the store and the reason');
unlike(log_of('auth'), qr/a-wrong-password/, 'never the password');
ok(wait_until('tls', 10, sub { ($_[0]{store}{failed_rounds} // 0) >= 1 }), 'a certificate the system does not trust');
like(log_of('tls'), qr/\[error\] .*entra_shared_store "rediss:\/\/127\.0\.0\.1:$redis_port{tls}\/0" did not answer: TLS: .*certificate/i,
    'is an error line naming the store and why');
is(status_of('ca')->{store}{state}, 'up', 'with ca_file naming it, the same server is up');

# --- The outbox overflows while Redis is down: a watermark signs out every session signed in
# before it (closed, never open), at B at once and at A once Redis is back.
browser_origin("http://127.0.0.1:$port{a}");
idp_admin('approve?user=erin');
my (undef, $erin) = sign_in('/app');
is(status_at('b', $erin), 200, 'a session accepted at B');
my %before = map { $_ => status_of($_) } qw(a b);
stop_redis('plain');
my $called = 0;
$called += request('GET', at('b', "/.entra/logout?sid=flood-$_"))->{status} == 200 for 1 .. 2100;
is($called, 2100, 'B answers 2,100 calls for sids it did not issue while Redis is down');
ok(wait_until('b', 2, sub { $_[0]{dropped} > $before{b}{dropped} && $_[0]{watermarks} > $before{b}{watermarks} }),
    'its outbox overflows: calls it cannot keep raise the watermark');
is(status_at('b', $erin), 401, 'which refuses the session at B at once');
start_redis('plain');
ok(wait_until('a', 10, sub { ($_[0]{watermark} // 0) > ($before{a}{watermark} // 0) }), 'once Redis is back, A reads the watermark');
is(status_at('a', $erin), 401, 'and refuses the session too');

# --- Another store on reload: B tells it what it holds and reads it from the start.
start_redis('other');
$store{b} = "redis://127.0.0.1:$redis_port{other}";
configure('b', 1);
reload_nginx($pid{b}, $prefix{b});
ok(wait_until('b', 10, sub { ($_[0]{store}{name} // '') =~ /:$redis_port{other}\// && $_[0]{store}{state} eq 'up' }),
    'B speaks to the other Redis');
$pid{e} = start_nginx($prefix{e}, 'conf/nginx.conf', $port{e});
is(status_at('e', $alice), 401, 'a new instance on it refuses the sign-out B was told before the reload');

# --- A reload without the store: the instance goes on alone, its own sign-outs in force.
configure('a', 0);
reload_nginx($pid{a}, $prefix{a});
ok(wait_until('a', 10, sub { !%{ $_[0]{store} } }), 'A reloaded without entra_shared_store');
is(status_at('a', $alice), 401, 'its own record still refuses the session it ended');
browser_origin("http://127.0.0.1:$port{a}");
idp_admin('approve?user=alice');
my (undef, $again) = sign_in('/app');
is(status_at('a', $again), 200, 'and signs in as before');

done_testing();
