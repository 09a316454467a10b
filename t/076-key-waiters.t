# While no keys were ever loaded, requests with well-formed tokens wait for the first fetch: at
# most 256 per worker (beyond, 503 keys_unavailable at once, so that made-up tokens cannot hold
# connections), and the fetch wakes them when it ends.
use strict;
use warnings;

use File::Path qw(make_path remove_tree);
use Test::More;
use EntraTest;

my $port = ($ENV{TEST_NGINX_PORT} || 1984) + 120;
my $prefix = ($ENV{TEST_NGINX_SERVROOT} || 't/servroot') . '-waiters';
my $debug = `$ENV{TEST_NGINX_BINARY} -V 2>&1` =~ /--with-debug/;
my ($waiters, $clients) = (256, 300);

remove_tree($prefix);
make_path("$prefix/conf", "$prefix/logs");
write_nginx_conf($prefix, $port, live_provider('fetch_timeout 20s;'), connections => 1024,
    level => $debug ? 'debug' : 'info');

idp_admin('reset');
# The first fetch (metadata, then keys: twice the delay) takes long enough for every client to arrive while it runs.
idp_admin('mode?set=slow&ms=2500');
my $pid = start_nginx($prefix, 'conf/nginx.conf', $port);
END { kill 'TERM', $pid if $pid }
my $token = live_idp('mint');

my @socks = map {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp') or die $!;
    print $sock "GET /api HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer $token\r\nConnection: close\r\n\r\n";
    $sock;
} 1 .. $clients;
my %status;
for my $sock (@socks) {
    my $answer = read_answer($sock, 30);
    my ($code) = $answer =~ m{^HTTP/1\.1 (\d+) };
    $status{$code // 'none'}++;
}
idp_admin('mode?set=normal');
is($status{200}, $waiters, "$waiters requests waited for the keys and got in") or diag explain \%status;
is($status{503}, $clients - $waiters, 'the others were refused with 503') or diag explain \%status;

my $log = do { open my $in, '<', "$prefix/logs/error.log" or die $!; local $/; <$in> };
my @refused = $log =~ /access denied: keys_unavailable \(provider "live"\)/g;
is(scalar @refused, $clients - $waiters, 'each refusal logged as keys_unavailable');
SKIP: {
    skip 'nginx was built without --with-debug', 1 unless $debug;
    like($log, qr/entra: waking $waiters requests waiting for keys/, 'the fetch woke the waiting requests');
}

kill 'TERM', $pid;
waitpid $pid, 0;
undef $pid;
done_testing();
