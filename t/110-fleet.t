# A fleet: several nginx instances (separate masters, separate zones) sharing one Redis through
# entra_shared_store. A sign-out at any instance (Entra's front-channel call, or entra_logout)
# is refused by every other within 2 seconds; a flood of sids no instance issued signs out
# nobody; a restarted instance, and one started after the sign-out, still refuse it; Redis
# stopped meanwhile, the sign-out reaches the others once it is back. Each wait below polls an
# entra_status counter until it moves, never a fixed sleep.
use strict;
use warnings;

use File::Copy qw(copy);
use File::Path qw(make_path remove_tree);
use JSON::PP qw(decode_json);
use Test::More;
use Time::HiRes qw(time);
use EntraTest;
use EntraBrowser;

my $base = ($ENV{TEST_NGINX_PORT} || 1984) + 230;
my $ADMINS = '0b9f3f6e-4a4c-4c1e-9a63-2f1d8f1b57e1';
my $redis_port = $base + 9;
my $root = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-fleet';

# Redis on a loopback port of its own (the package's service on 6379 is left alone), keeping its
# data on disk so that a restart keeps it.
my $redis_dir = "$root-redis";
my $redis_pid;
sub start_redis {
    make_path($redis_dir);
    $redis_pid = fork // die;
    if (!$redis_pid) {
        open STDOUT, '>>', "$redis_dir/redis.log";
        exec 'redis-server', '--port', $redis_port, '--bind', '127.0.0.1', '--dir', $redis_dir, '--save', '',
            '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no' or die;
    }
    my $deadline = time + 10;
    until (IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $redis_port)) {
        die "redis-server did not start\n" if time > $deadline;
        select undef, undef, undef, 0.02;
    }
}
sub stop_redis { kill 'TERM', $redis_pid; waitpid $redis_pid, 0 }
remove_tree($redis_dir);
start_redis();
END { kill 'TERM', $redis_pid if $redis_pid }

# Instance A signs in (its prefix has the client secret and the session key); the others get
# copies of both, as a fleet's instances share them.
my %port = (a => $base, b => $base + 2, c => $base + 3, d => $base + 4);
my %prefix = map { $_ => "$root-$_" } keys %port;
signin_prefix($prefix{a});
for my $name (qw(b c d)) {
    remove_tree($prefix{$name});
    make_path("$prefix{$name}/conf", "$prefix{$name}/logs");
    for my $file (qw(secret session.keys)) {
        copy("$prefix{a}/conf/$file", "$prefix{$name}/conf/$file") or die $!;
        chmod 0600, "$prefix{$name}/conf/$file";
    }
}
for my $name (sort keys %port) {
    my $provider = "    entra_shared_store redis://127.0.0.1:$redis_port prefix=t110;\n"
        . live_provider('client_secret_file secret;', 'session_key_file session.keys;', 'groups_from_graph on;',
            'graph_url $TEST_NGINX_IDP_URL/graph;');
    write_nginx_conf($prefix{$name}, $port{$name}, $provider, server => <<"LOCATIONS");
        location /app { entra_auth live session; proxy_pass http://127.0.0.1:$port{$name}/who; }
        location /admins { entra_auth live; entra_require_group $ADMINS; proxy_pass http://127.0.0.1:$port{$name}/who; }
        location = /logout { entra_auth live session; entra_logout; }
        location /who { return 200 "who=\$entra_oid\\n"; }
        location = /status { entra_status; }
LOCATIONS
}
browser_origin("http://127.0.0.1:$port{a}");
my %pid = (a => run_nginx($prefix{a}, $port{a}, 'approve?user=alice'));
$pid{$_} = start_nginx($prefix{$_}, 'conf/nginx.conf', $port{$_}) for qw(b c);
END { kill 'TERM', $_ for grep { $_ } @pid{qw(b c d)} }

sub at { my ($name, $path) = @_; "http://127.0.0.1:$port{$name}$path" }
# A script's request with a session cookie (a refusal is a 401, not a redirect).
sub status_at { my ($name, $jar) = @_; request('GET', at($name, '/app'), $jar, Accept => 'application/json')->{status} }
sub fleet_of {
    my ($name) = @_;
    my $res = request('GET', at($name, '/status'));
    my $status = eval { decode_json($res->{content}) } or return {};
    return { %{ $status->{providers}[0]{fleet} // {} }, store => $status->{store} };
}
# Polls instance $name's fleet counter $field until it reaches $want (at most $seconds).
sub wait_for {
    my ($name, $field, $want, $seconds) = @_;
    my $deadline = time + $seconds;
    while (time < $deadline) {
        return 1 if (fleet_of($name)->{$field} // 0) >= $want;
        select undef, undef, undef, 0.05;
    }
    return 0;
}
sub sid_of { my ($log) = @_; ($log =~ /signed in: provider "live", oid \S+, tid \S+, sid ([0-9a-f-]{36})/g)[-1] }
sub log_of { my ($name) = @_; open my $in, '<', "$prefix{$name}/logs/error.log" or return ''; local $/; <$in> }

# --- A sign-out at one instance reaches every other.
sub store_up {
    my ($name) = @_;
    my $deadline = time + 5;
    while (time < $deadline) {
        return 1 if (fleet_of($name)->{store}{state} // '') eq 'up';
        select undef, undef, undef, 0.05;
    }
    return 0;
}
ok(store_up($_), "instance $_ reaches the store") for qw(a b c);
my (undef, $alice) = sign_in('/app');
my $sid = sid_of(log_text());
ok($sid, 'signed in at A');
is(status_at($_, $alice), 200, "the session is accepted at $_") for qw(a b c);
my %received = map { $_ => fleet_of($_)->{received} } qw(a c);
my $called = request('GET', at('b', "/.entra/logout?sid=$sid"));
is($called->{status}, 200, 'Entra calls the front-channel logout URL at B');
like(log_of('b'), qr/sid \Q$sid\E is not one this instance signed in: asking the fleet's store/, 'B asks the store');
my $t0 = time;
ok(wait_for('a', 'received', $received{a} + 1, 2), 'A reads the sign-out within 2 s');
ok(wait_for('c', 'received', $received{c} + 1, 2 - (time - $t0) + 0.2), 'C too');
is(fleet_of('b')->{confirmed}, 1, 'B counts the call the store confirmed');
my $metrics = request('GET', at('b', '/status?format=prometheus'))->{content};
like($metrics, qr/^entra_fleet_confirmed_total\{provider="live"\} 1$/m, 'in Prometheus\' format too');
like($metrics, qr/^entra_store_up\{store="redis:\/\/127\.0\.0\.1:$redis_port\/0"\} 1$/m, 'with the store\'s state');
is(status_at($_, $alice), 401, "the session is refused at $_") for qw(a b c);
like(log_of('c'), qr/session_revoked/, 'C logs why');

# --- A flood of sids no instance issued signs out nobody.
idp_admin('approve?user=bob');
my (undef, $bob) = sign_in('/app');
is(status_at('c', $bob), 200, 'another session');
my $before = fleet_of('b')->{unknown} // 0;
my $flooded = 0;
$flooded += request('GET', at('b', "/.entra/logout?sid=flood-$_"))->{status} == 200 for 1 .. 1000;
is($flooded, 1000, 'B answers every call');
ok(wait_for('b', 'unknown', $before + 1000, 20), 'and the store said no to each');
is(status_at($_, $bob), 200, "the session still holds at $_") for qw(a b c);
is(fleet_of('b')->{watermarks}, 0, 'no watermark rose');

# --- entra_logout at A refuses a copied cookie at C.
my %copy = %$bob;
%received = map { $_ => fleet_of($_)->{received} } qw(b c);
my $out = request('POST', at('a', '/logout'), $bob, Origin => "http://127.0.0.1:$port{a}");
is($out->{status}, 302, 'entra_logout at A');
$t0 = time;
ok(wait_for('c', 'received', $received{c} + 1, 2), 'C reads it within 2 s');
ok(wait_for('b', 'received', $received{b} + 1, 2 - (time - $t0) + 0.2), 'B too');
is(status_at('c', \%copy), 401, 'the copied cookie is refused at C');
is(status_at('b', \%copy), 401, 'and at B');

# --- A restarted instance, and one started after, still refuse them.
kill 'QUIT', $pid{c};
waitpid $pid{c}, 0;
$pid{c} = start_nginx($prefix{c}, 'conf/nginx.conf', $port{c});
# Its first session request waits for its first read of the store: no window of acceptance.
is(status_at('c', $alice), 401, 'C, restarted, refuses the first session from its first request on');
is(status_at('c', \%copy), 401, 'and the second');
is(fleet_of('c')->{signed_out}, 2, 'both read back from the store');
$pid{d} = start_nginx($prefix{d}, 'conf/nginx.conf', $port{d});
is(status_at('d', \%copy), 401, 'a new instance D refuses them from its first request on');
is(status_at('d', $alice), 401, 'both');

# --- Redis stopped during the sign-out: the others refuse it once it is back.
idp_admin('approve?user=dana');
my (undef, $carol) = sign_in('/app');
my $carol_sid = sid_of(log_text());
is(status_at('c', $carol), 200, 'a third session');
stop_redis();
is(request('GET', at('b', "/.entra/logout?sid=$carol_sid"))->{status}, 200, 'its front-channel call at B while Redis is down');
ok(wait_for('b', 'waiting', 1, 5), 'B keeps it in its outbox');
is(status_at('c', $carol), 200, 'nobody can say yet: C still accepts it');
# Redis restarted (with its data) has another run_id: the instances read it again from the
# start, so count the sessions refused by name, not the entries read.
my %signed_out = map { $_ => fleet_of($_)->{signed_out} } qw(a c);
start_redis();
ok(wait_for('c', 'signed_out', $signed_out{c} + 1, 5), 'once Redis is back, C reads it');
ok(wait_for('a', 'signed_out', $signed_out{a} + 1, 2), 'and A');
is(status_at($_, $carol), 401, "and the session is refused at $_") for qw(a c);
like(log_of('b'), qr/\[error\] .*entra_shared_store "redis:\/\/127\.0\.0\.1:$redis_port\/0" did not answer/,
    'B logged that the store did not answer');

# --- Graph's answers shared: one instance asks Graph, the others read its sealed answer.
# A few words of Redis's protocol, to look at the store as an operator (or an attacker) would.
sub redis {
    my @words = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $redis_port) or die $!;
    print $sock '*' . @words . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @words);
    my $read = sub { my $line = <$sock>; $line =~ s/\r\n$//; $line };
    my $reply = $read->();
    if ($reply =~ /^\$(-?\d+)/) { return undef if $1 < 0; read $sock, my $bulk, $1 + 2; return substr $bulk, 0, $1 }
    if ($reply =~ /^\*(\d+)/) { return [map { my $len = $read->(); read $sock, my $b, substr($len, 1) + 2; substr $b, 0, -2 } 1 .. $1] }
    return $reply =~ s/^[+:]//r;
}
sub graph_calls { decode_json(idp_admin('stats'))->{graph}{calls} }
sub overage { my ($user) = @_; live_idp('mint', '--user', $user, '--overage', '--claim-source', "$ENV{TEST_NGINX_IDP_URL}/_claim_source") }
sub admins_at { my ($name, $token) = @_; request('GET', at($name, '/admins'), {}, Authorization => "Bearer $token")->{status} }
# The answers the store holds that were not there before (dana's sign-in asked Graph too).
my %known;
sub new_answers { my @new = grep { !$known{$_}++ } @{ redis('KEYS', 't110:live:graph:*') }; @new }
new_answers();
idp_admin("graph?user=erin&groups=$ADMINS");
my $erin = overage('erin');
my $calls = graph_calls();
is(admins_at('a', $erin), 200, 'a member with group overage gets in at A, by Graph');
my $asked = graph_calls() - $calls;
ok($asked > 0, 'A asked Graph');
my @answers = new_answers();
is(scalar @answers, 1, 'and kept the answer in the store');
unlike(redis('GET', $answers[0]), qr/\Q$ADMINS\E|erin/, 'sealed: neither the group nor the user shows');
is(admins_at('b', $erin), 200, 'B lets her in too');
is(graph_calls() - $calls, $asked, 'without asking Graph: one lookup for two instances');
is(fleet_of('b')->{graph_shared}, 1, 'B counts the answer it read from the store');
# Frank is in no group asked: his answer says so. Erin's answer, copied over his, grants him nothing.
idp_admin('graph?user=frank&groups=1d2c3b4a-0000-4000-8000-000000000001');
my $frank = overage('frank');
is(admins_at('a', $frank), 403, 'a user in no required group is refused at A');
my @franks = new_answers();
is(scalar @franks, 1, 'his answer is in the store too');
my $franks = $franks[0];
is(redis('SET', $franks, redis('GET', $answers[0])), 'OK', 'an attacker copies the member\'s answer over his');
$calls = graph_calls();
is(admins_at('c', $frank), 403, 'C still refuses him');
ok(graph_calls() > $calls, 'C asked Graph itself');
like(log_of('c'), qr/\[error\] .*provider "live": shared Graph answers: an answer in the store does not open/, 'and logged it');
is(redis('SET', $franks, '{"groups":["' . $ADMINS . '"]}'), 'OK', 'an answer written by hand');
is(admins_at('d', $frank), 403, 'grants nothing either');

done_testing();
