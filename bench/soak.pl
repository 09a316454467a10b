# The soak of scripts/soak: nginx with 2 workers and the module against the development IdP,
# wrk at a steady rate with valid tokens (repeated and first-sight), while a timetable reloads
# nginx 10 times, rotates the IdP's keys twice the way Entra does, serves garbage key sets, takes
# the IdP down and kill -9s a worker. Reports answers by status and by phase, refusals of valid
# tokens, worker memory and file descriptors; exits non-zero when a valid token was refused, an
# alert was logged (other than the killed worker's), or (ENFORCE_MEMORY) a worker grew 5 % or
# more after its warm-up. Not meant to be run alone.
use strict;
use warnings;
use HTTP::Tiny;
use JSON::PP;
use List::Util qw(sum max);
use Time::HiRes qw(time sleep);

my ($dir, $seconds, $nginx, $idp, $module) = @ENV{qw(SOAK_DIR SECONDS_TOTAL NGINX_BINARY IDP MODULE)};
my $enforce_memory = $ENV{ENFORCE_MEMORY};
my ($idp_port, $port) = (9510, 9520);
my $idp_url = "http://127.0.0.1:$idp_port";
my $prefix = "$dir/nginx";
my $http = HTTP::Tiny->new(timeout => 10);
my ($connections, $threads, $delay_ms, $every) = (4, 2, 10, 10);

sub run { my $out = `@_`; die "failed: @_\n$out" if $?; chomp $out; $out }
sub idp { my $command = shift; run($idp, $command, '--state', "$dir/idp", @_) }
sub admin { my $r = $http->get("$idp_url/_admin/$_[0]"); die "IdP admin $_[0]: $r->{status}\n" unless $r->{success} }
sub status { decode_json($http->get("http://127.0.0.1:$port/status")->{content})->{providers}[0] }
sub master_pid { open my $in, '<', "$prefix/logs/nginx.pid" or die $!; my $pid = <$in>; chomp $pid; $pid }
sub workers { my $m = master_pid(); grep { $_ } map { /^\s*(\d+)\s+(\S+)/ && $2 eq $m ? $1 : () } `ps -eo pid=,ppid=` }
sub rss_kb { my ($pid) = @_; my $kb = `ps -o rss= -p $pid`; $kb =~ s/\s//g; $kb || 0 }
sub fds { my ($pid) = @_; opendir my $d, "/proc/$pid/fd" or return 0; scalar grep { /^\d+$/ } readdir $d }
$main::started = time;
sub say_now { printf STDERR "==> [soak %4.0fs] %s\n", time - $main::started, "@_" }

# --- The IdP, tokens, nginx.
my $tenant = '9f2b7c1e-3d4a-4b8e-a6f0-5c2d8e7b1a93';
idp('init', '--authority', $idp_url);
my $idp_pid = fork // die;
if (!$idp_pid) { exec $idp, 'serve', '--state', "$dir/idp", '--listen', "127.0.0.1:$idp_port" or die }
# `local $?`: what END runs must not replace the exit status it ends with.
END { local $?; kill 'TERM', $idp_pid if $idp_pid; system("$nginx -p $prefix/ -c conf/nginx.conf -s stop 2>/dev/null") if $prefix && -f "$prefix/logs/nginx.pid" }
my $rate = $connections * 1000 / $delay_ms;
my $first_sight = int($rate / $every * $seconds * 1.1) + 100;
say_now("minting 50 repeated and $first_sight first-sight tokens");
idp('mint', "--exp 86400 --count 50 > $dir/repeated.txt");
idp('mint', "--exp 86400 --count $first_sight > $dir/first-sight.txt");
mkdir "$dir/rotated";
open my $conf, '>', "$prefix/conf/nginx.conf" or die $!;
my $user = $> == 0 ? 'user root;' : '';
print $conf <<"CONF";
load_module $module;
$user
worker_processes 2;
error_log logs/error.log info;
pid logs/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    log_format soak '\$msec \$status "\$entra_error"';
    entra_provider soak {
        tenant        $tenant;
        client_id     6e1c4d2a-8b3f-4a7e-9c05-2f7d1b3e8a64;
        authority     $idp_url;
        refresh       1s;
        fetch_timeout 2s;
        token_cache   1000;
    }
    server {
        listen 127.0.0.1:$port;
        location /api { entra_auth soak; access_log logs/access.log soak; root html; try_files /ok.txt =404; }
        location = /status { entra_status; }
    }
}
CONF
close $conf;
# The daemon must not hold the pipe that `run` reads until its end.
run("$nginx -p $prefix/ -c conf/nginx.conf >$prefix/logs/start.log 2>&1");

# --- The timetable (fractions of the run): disruptions in the first half, then a steady tail
# whose workers are measured from the end of their warm-up to the end. A worker's warm-up fills
# its token cache and lets its fetches settle: each pool thread that runs a fetch keeps a malloc
# arena of its own, so a new worker's RSS climbs for its first minute or so of 1 s refreshes,
# then holds.
my $d = $seconds;
my @events = (
    [0.10 * $d, 'rotation 1', sub { rotate(1) }],
    (map { my $i = $_; [(0.12 + 0.04 * $i) * $d, "reload " . ($i + 1), sub { kill 'HUP', master_pid() }] } 0 .. 9),
    [0.18 * $d, 'garbage key sets', sub { admin('mode?set=garbage&kind=text') }],
    [0.18 * $d + min(20, 0.08 * $d), 'key sets good again', sub { admin('mode?set=normal') }],
    [0.28 * $d, 'IdP down', sub { admin('mode?set=down') }],
    [0.28 * $d + min(60, 0.2 * $d), 'IdP up', sub { admin('mode?set=normal') }],
    [0.28 * $d + min(60, 0.2 * $d) + 2, 'rotation 2', sub { rotate(2) }],
    [0.50 * $d, 'kill -9 a worker', sub { my @w = workers(); $main::killed = $w[0]; kill 'KILL', $w[0] }],
    [0.70 * $d, 'tail warmed up', sub { $main::tail = { map { $_ => [rss_kb($_), fds($_)] } workers() } }],
);
sub min { $_[0] < $_[1] ? $_[0] : $_[1] }
@events = sort { $a->[0] <=> $b->[0] } @events;

# Entra's way: the new key is published first (tokens still signed with the old one); once nginx
# shows it, tokens signed with it come too.
sub rotate {
    my ($n) = @_;
    my $kid = idp('add-key');
    # After an outage, the next fetch may be a backoff (up to a minute) away.
    my $deadline = time + 120;
    until (grep { $_ eq $kid } @{ status()->{kids} }) {
        die "rotation $n: nginx did not show key $kid within 120 s\n" if time > $deadline;
        sleep 0.2;
    }
    idp('mint', "--exp 86400 --count 200 --key $kid > $dir/rotated/$n.tmp");
    rename "$dir/rotated/$n.tmp", "$dir/rotated/$n.txt" or die $!;
}

$main::started = time;
my $wrk = "env REPEATED=$dir/repeated.txt FIRST_SIGHT=$dir/first-sight.txt ROTATED_DIR=$dir/rotated "
    . "DELAY_MS=$delay_ms FIRST_SIGHT_EVERY=$every THREADS=$threads "
    . "wrk -t$threads -c$connections -d${seconds}s --timeout 10s -s bench/soak.lua http://127.0.0.1:$port/api";
my $wrk_pid = open my $wrk_out, '-|', "$wrk 2>&1" or die $!;
my $warm = 0.1 * $d;
my (%warm, @marks);
for my $event ([$warm, 'warmed up', sub { %warm = map { $_ => [rss_kb($_), fds($_)] } workers() }], @events) {
    my ($at, $name, $action) = @$event;
    sleep($at - (time - $main::started)) if $at > time - $main::started;
    say_now($name);
    push @marks, [time, $name];
    $action->();
}
my $wrk_text = do { local $/; <$wrk_out> };
close $wrk_out;
my %end = map { $_ => [rss_kb($_), fds($_)] } workers();
my $master_fds = fds(master_pid());

# --- What happened.
my ($requests) = $wrk_text =~ /(\d+) requests in/;
my ($socket_errors) = $wrk_text =~ /Socket errors: (.*)/;
my @phases = ([$main::started, 'warm-up'], @marks);
my (%by_status, %by_phase, $refused);
open my $log, '<', "$prefix/logs/access.log" or die $!;
while (<$log>) {
    my ($at, $status, $error) = /^(\S+) (\d+) "([^"]*)"/ or next;
    my $phase = 'warm-up';
    $phase = $_->[1] for grep { $_->[0] <= $at } @phases;
    $by_status{$status}++;
    $by_phase{$phase}{$status}++;
    $refused->{"$status $error"}++ if $status ne '200';
}
my $errors = do { open my $in, '<', "$prefix/logs/error.log" or die $!; local $/; <$in> };
my @alerts = grep { !/worker process (\d+) exited on signal 9/ || $1 != $main::killed }
    grep { /\[(alert|crit|emerg)\]/ } split /\n/, $errors;

printf "soak: %d s, %d requests sent by wrk (%s), %d answered in the access log\n",
    $seconds, $requests // 0, $socket_errors // 'no socket errors', sum(values %by_status) // 0;
printf "answers by status: %s\n", join ', ', map { "$_: $by_status{$_}" } sort keys %by_status;
for my $phase (@phases) {
    my $counts = $by_phase{$phase->[1]} or next;
    printf "  %-22s %s\n", $phase->[1], join ', ', map { "$_: $counts->{$_}" } sort keys %$counts;
}
my $refusals = sum(values %{ $refused // {} }) // 0;
printf "refusals of valid tokens: %d%s\n", $refusals,
    $refusals ? ' (' . join(', ', map { "$_: $refused->{$_}" } sort keys %$refused) . ')' : '';
printf "worker RSS at the first warm-up: %s\n", join ', ', map { "$_: $warm{$_}[0] KiB" } sort keys %warm;
my @growth;
for my $pid (sort keys %{ $main::tail // {} }) {
    next unless $end{$pid};
    my ($from, $to) = ($main::tail->{$pid}[0], $end{$pid}[0]);
    push @growth, ($to - $from) / $from * 100;
    printf "worker %d: RSS %d KiB after the tail's warm-up, %d KiB at the end (%+.1f %%); fds %d -> %d\n",
        $pid, $from, $to, $growth[-1], $main::tail->{$pid}[1], $end{$pid}[1];
}
printf "master fds at the end: %d\n", $master_fds;
print "alerts: ", (@alerts ? join("\n", @alerts) : 'none but the killed worker\'s'), "\n";

my @failed;
push @failed, "$refusals valid tokens refused" if $refusals;
push @failed, scalar(@alerts) . " alert lines" if @alerts;
push @failed, "no worker lasted the tail" unless @growth;
push @failed, sprintf("a worker grew %.1f %% (limit 5 %%)", max(@growth)) if $enforce_memory && @growth && max(@growth) >= 5;
if (@failed) { print "soak FAILED: ", join('; ', @failed), "\n"; exit 1 }
print "soak passed", ($enforce_memory ? ' (memory limit enforced)' : ' (memory reported, not enforced)'), "\n";
