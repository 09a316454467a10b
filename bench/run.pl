# Runs the load scenarios of scripts/bench, interleaved round by round, and reports them against
# the baseline and the crypto floor measured by the micro-benchmark. Not meant to be run alone.
use strict;
use warnings;
use JSON::PP;
use List::Util qw(sum);
use HTTP::Tiny;

my $dir = $ENV{BENCH_DIR};
my ($rounds, $duration) = @ENV{qw(ROUNDS DURATION)};
my $url = 'http://127.0.0.1:8090';
# Other builds of the module, each in its own nginx with the same configuration: the other
# signature libraries (ring, openssl) and scripts/bench --compare's modules, as label=url.
my @compared = map { [split /=/, $_, 2] } split ' ', ($ENV{COMPARED} // '');

# name => [path, token file, what it shows, server (default $url), compared build's label]
my @scenarios = (
    [baseline         => '/baseline', 'token-repeated.txt',  'plain nginx, static file, same Authorization header'],
    [repeated         => '/cached',   'token-repeated.txt',  'module, one valid token repeated (cache hit)'],
    [distinct         => '/uncached', 'tokens-distinct.txt', 'module, 10,000 distinct valid tokens, token_cache off'],
    [invalid          => '/uncached', 'tokens-invalid.txt',  'module, 10,000 tokens with bad signatures'],
    [sidecar_distinct => '/sidecar',  'tokens-distinct.txt', 'auth_request sidecar (Rust, hyper, cache), distinct tokens'],
    [sidecar_repeated => '/sidecar',  'token-repeated.txt',  'auth_request sidecar, one token repeated'],
    [session_baseline => '/baseline', 'session-repeated.txt', 'plain nginx, static file, the same 200-group session cookie'],
    [session_repeated => '/session',  'session-repeated.txt', 'module, one 200-group session cookie repeated (session cache)'],
    [session_distinct => '/session-uncached', 'sessions-distinct.txt',
        'module, 10,000 distinct 200-group session cookies, token_cache off'],
);
# The module's scenarios again against each compared build, interleaved with the others.
my @module_scenarios = grep { $_->[0] =~ /^(?:baseline|repeated|distinct|invalid)$/ } @scenarios;
for my $c (@compared) {
    my ($label, $base) = @$c;
    push @scenarios, map { ["$_->[0]_$label", @$_[1 .. 2], "$_->[3] ($label build)", $base, $label] } @module_scenarios;
}

sub wrk {
    my ($path, $tokens, $seconds, $base, %env) = @_;
    $base //= $url;
    my $env = join ' ', map { "$_=$env{$_}" } keys %env;
    # One token: a fixed header, which costs the load generator least; several: the Lua cycle.
    # Session files hold Cookie header values.
    my @lines = do { open my $fh, '<', "$dir/$tokens" or die $!; <$fh> };
    chomp @lines;
    my $cookie = $tokens =~ /^session/;
    my $fixed = $cookie ? "Cookie: $lines[0]" : "Authorization: Bearer $lines[0]";
    my $source = @lines == 1 ? "-H '$fixed'" : "-s bench/cycle-tokens.lua";
    $env .= ' HEADER=Cookie' if $cookie;
    my $out = `TOKENS=$dir/$tokens $env taskset -c 1 wrk -t1 -c50 -d${seconds}s --latency $source $base$path 2>&1`;
    die "wrk failed:\n$out" if $?;
    my ($rps) = $out =~ /Requests\/sec:\s+([\d.]+)/;
    my %ms;
    for my $p (50, 99) {
        my ($v, $unit) = $out =~ /^\s+$p%\s+([\d.]+)(us|ms|s)\b/m;
        $ms{$p} = $v * { us => 0.001, ms => 1, s => 1000 }->{$unit};
    }
    my ($non2xx) = $out =~ /Non-2xx or 3xx responses:\s+(\d+)/;
    my ($requests) = $out =~ /(\d+) requests in/;
    return { rps => $rps, p50 => $ms{50}, p99 => $ms{99}, non2xx => $non2xx // 0, requests => $requests };
}

# A counter summed over the providers, from entra_status.
sub status_sum {
    my ($base, $count) = @_;
    my $res = HTTP::Tiny->new->get(($base // $url) . "/status");
    die "entra_status: $res->{status}\n" unless $res->{success};
    return sum(map { $count->($_->{counters}) } @{ decode_json($res->{content})->{providers} });
}

# Time the worker spent judging tokens and opening session cookies the caches did not answer,
# in µs.
sub judging_us { status_sum($_[0], sub { $_[0]{verify_microseconds} + ($_[0]{session_microseconds} // 0) }) }

# Function-call and rescheduling interrupts taken by the load generator's CPU (1): a wake-up of
# an idle vCPU, which the sending CPU (nginx's) pays for in exits to the hypervisor.
sub wakeups {
    open my $fh, '<', '/proc/interrupts' or return 0;
    my $n = 0;
    while (<$fh>) { $n += $1 if /^\s*(?:CAL|RES):\s+\d+\s+(\d+)/ }
    return $n;
}

sub median {
    my @v = sort { $a <=> $b } @_;
    return @v % 2 ? $v[$#v / 2] : ($v[@v / 2 - 1] + $v[@v / 2]) / 2;
}

sub master_pid {
    open my $fh, '<', "$ENV{NGINX_PREFIX}/logs/nginx.pid" or die "nginx.pid: $!";
    my $pid = <$fh>;
    chomp $pid;
    return $pid;
}

sub workers { my @pids = `pgrep -P ${\ master_pid()}` =~ /(\d+)/g; return @pids }

sub worker_rss_kib {
    my ($worker) = workers();
    my ($kib) = `cat /proc/$worker/status` =~ /VmRSS:\s+(\d+)/;
    return $kib;
}

# A fresh worker (nginx -s reload), once the old one has gone.
sub fresh_worker {
    my ($old) = workers();
    kill 'HUP', master_pid();
    my $deadline = time + 30;
    until ((my @now = workers()) == 1 && (workers())[0] != $old) {
        die "no fresh worker after a reload\n" if time > $deadline;
        select undef, undef, undef, 0.05;
    }
}

# Warm up every path once (connections, keep-alive to the sidecar, caches).
wrk($_->[1], $_->[2], 1, $_->[4]) for @scenarios;

my %runs;
for my $round (1 .. $rounds) {
    for my $s (@scenarios) {
        my ($name, $path, $tokens, undef, $base) = @$s;
        my ($judging, $wakeups) = (judging_us($base), wakeups());
        my $r = wrk($path, $tokens, $duration, $base);
        $r->{module_us} = (judging_us($base) - $judging) / $r->{requests};
        $r->{wakeups} = (wakeups() - $wakeups) / $r->{requests};
        push @{ $runs{$name} }, $r;
        printf "round %d %-17s %9.0f req/s  p50 %.3f ms  p99 %.3f ms%s\n", $round, $name, $r->{rps}, $r->{p50},
            $r->{p99}, $r->{non2xx} && $name !~ /^invalid/ ? "  ($r->{non2xx} non-2xx!)" : '';
    }
}

my %result;
for my $s (@scenarios) {
    my $name = $s->[0];
    $result{$name} =
        { map { my $k = $_; ($k => median(map { $_->{$k} } @{ $runs{$name} })) } qw(rps p50 p99 module_us wakeups) };
    $result{$name}{what} = $s->[3];
    $result{$name}{build} = $s->[5] if $s->[5];
}
my $base = $result{baseline};
# One nginx worker on one core: the time a request costs is 1/rps; above the baseline's, it is
# what authentication adds. A compared build's scenarios count from its own nginx's baseline.
for my $name (keys %result) {
    my $build = $result{$name}{build};
    my $floor = $build ? $result{"baseline_$build"} : $name =~ /^session/ ? $result{session_baseline} : $base;
    $result{$name}{ratio} = $result{$name}{rps} / $floor->{rps};
    $result{$name}{extra_us} = 1e6 / $result{$name}{rps} - 1e6 / $floor->{rps};
}

# The crypto floor from criterion's estimates: medians, which this VM's pauses move least. The
# whole first-sight judgment with ring and OpenSSL comes from their builds' saved baselines.
sub criterion_us {
    my ($name, $baseline) = @_;
    my $file = "target/criterion/$name/$baseline/estimates.json";
    open my $fh, '<', $file or die "$file: $!";
    return decode_json(do { local $/; <$fh> })->{median}{point_estimate} / 1000;
}
my @shared_index = map { ("shared_index_hit$_", "shared_index_miss_record$_") } '', '_contended', '_hammered';
my %micro = map { $_ => criterion_us($_, 'new') } qw(judge_uncached judge_cached rsa_verify_only
    rsa_verify_only_ring rsa_verify_only_openssl open_session_uncached open_session_cached), @shared_index;
$micro{"judge_uncached_$_"} = criterion_us('judge_uncached', $_) for qw(ring openssl);
# The module's library is aws-lc-rs; the target is the fastest verification of the three.
my %verify_only = ('aws-lc-rs' => $micro{rsa_verify_only}, ring => $micro{rsa_verify_only_ring},
    openssl => $micro{rsa_verify_only_openssl});
my ($fastest) = sort { $verify_only{$a} <=> $verify_only{$b} } keys %verify_only;

# Memory: a worker's RSS before and after 200,000 distinct tokens through the default cache.
fresh_worker();
wrk('/cached', 'token-repeated.txt', 1);
my $rss_before = worker_rss_kib();
# wrk stops sending after 200,000 responses but waits out its duration: size it from a probe.
my $probe = wrk('/cached', 'tokens-memory.txt', 2, undef, STOP_AFTER => 1_000_000);
wrk('/cached', 'tokens-memory.txt', int(200_000 / $probe->{rps} * 1.2) + 2, undef, STOP_AFTER => 200_000);
my $rss_after = worker_rss_kib();

# Two workers with reuseport, 1,000 valid tokens cycled over 50 kept-alive connections through
# the default cache: how many times each token is verified.
my $workers_url = $ENV{WORKERS_URL};
my $verified = sub { status_sum($workers_url, sub { $_[0]{cache_misses} }) };
my ($verified_before, $judged_before) = ($verified->(), judging_us($workers_url));
my $spread = wrk('/cached', 'tokens-workers.txt', 4, $workers_url);
my $tokens = () = do { open my $fh, '<', "$dir/tokens-workers.txt" or die $!; <$fh> };
my %workers = (tokens => $tokens, requests => $spread->{requests}, verifications => $verified->() - $verified_before,
    judging_us => judging_us($workers_url) - $judged_before);

my $d = $result{distinct};
my %targets = (
    repeated_throughput => [$result{repeated}{ratio}, '>=', 0.98],
    repeated_p99_over_baseline => [$result{repeated}{p99} / $base->{p99}, '<=', 1.10],
    first_sight_judging_over_fastest_verify => [$d->{module_us} / $verify_only{$fastest}, '<=', 1.25,
        sprintf('end to end: %.2f us above the baseline, %.2fx', $d->{extra_us}, $d->{extra_us} / $verify_only{$fastest})],
    invalid_cost_over_distinct => [$result{invalid}{extra_us} / $d->{extra_us}, '<=', 1.0],
    distinct_vs_sidecar => [$d->{rps} / $result{sidecar_distinct}{rps}, '>=', 1.5],
    repeated_vs_sidecar => [$result{repeated}{rps} / $result{sidecar_repeated}{rps}, '>=', 2.5],
    session_repeated_throughput => [$result{session_repeated}{ratio}, '>=', 0.95],
    session_distinct_open_over_micro =>
        [$result{session_distinct}{module_us} / $micro{open_session_uncached}, '<=', 1.5],
);

print "\n";
printf "%-17s %10s %8s %9s %9s %12s %12s %9s\n",
    qw(scenario req/s ratio p50(ms) p99(ms) extra(us) judging(us) wakeups);
for my $s (@scenarios) {
    my $r = $result{ $s->[0] };
    printf "%-17s %10.0f %8.3f %9.3f %9.3f %12.2f %12.2f %9.2f\n", $s->[0], $r->{rps}, $r->{ratio}, $r->{p50},
        $r->{p99}, $r->{extra_us}, $r->{module_us}, $r->{wakeups};
}
printf "\nmicro-benchmark: judge_uncached %.2f us, judge_cached %.3f us, rsa_verify_only %.2f us, "
    . "open_session_uncached %.2f us, open_session_cached %.3f us\n",
    @micro{qw(judge_uncached judge_cached rsa_verify_only open_session_uncached open_session_cached)};
print "\nsignature libraries, same run (us; the module's build is aws-lc-rs; fastest verify-only: $fastest):\n";
printf "%-10s %12s %15s %15s %10s %12s %10s %14s\n", 'library', 'verify-only', 'judge(micro)', 'judging(worker)',
    'x fastest', 'extra(e2e)', 'repeated', 'invalid/first';
for my $library ('aws-lc-rs', 'ring', 'openssl') {
    my $suffix = $library eq 'aws-lc-rs' ? '' : "_$library";
    my ($first, $invalid) = @result{ "distinct$suffix", "invalid$suffix" };
    printf "%-10s %12.2f %15.2f %15.2f %10.3f %12.2f %10.3f %14.3f\n", $library, $verify_only{$library},
        $micro{"judge_uncached$suffix"}, $first->{module_us}, $first->{module_us} / $verify_only{$fastest},
        $first->{extra_us}, $result{"repeated$suffix"}{ratio}, $invalid->{extra_us} / $first->{extra_us};
}
printf "a verified-token index in the shared zone (measured, not in the module): a hit %.2f us (%.2f with the "
    . "other worker verifying, %.2f with it hammering the lock), %.2f us added to a first sight (%.2f, %.2f); "
    . "a token the other worker verified would cost a hit and the claims (%.2f us) instead of %.2f us\n",
    @micro{@shared_index[0, 2, 4]}, @micro{@shared_index[1, 3, 5]},
    $micro{shared_index_hit} + $micro{judge_uncached} - $micro{rsa_verify_only}, $micro{judge_uncached};
my $sd = $result{session_distinct};
printf "in the worker, a never-seen 200-group session cookie is opened in %.2f us (%.2fx the micro-benchmark's), "
    . "%.2f us above the baseline end to end\n",
    $sd->{module_us}, $sd->{module_us} / $micro{open_session_uncached}, $sd->{extra_us};
printf "in the worker, a first-sight token is judged in %.2f us, %.2fx the signature check; "
    . "the rest of its %.2f us above the baseline is spent outside the module\n",
    $d->{module_us}, $d->{module_us} / $micro{rsa_verify_only}, $d->{extra_us};
printf "two workers with reuseport: %d verifications of %d tokens in %d requests (%.2f per token), %.0f us judging\n",
    @workers{qw(verifications tokens requests)}, $workers{verifications} / $workers{tokens}, $workers{judging_us};
printf "fresh worker RSS: %.1f MiB before, %.1f MiB after 200,000 distinct tokens (default cache: 4096 tokens)\n\n",
    $rss_before / 1024, $rss_after / 1024;
for my $c (@compared) {
    my $label = $c->[0];
    print "this module against the $label build, same run (ratio of throughput; extra and judging in us):\n";
    printf "%-10s %14s %14s %10s %14s %14s\n", 'scenario', 'ratio', "$label-ratio", 'this/that', "extra/$label",
        "judging/$label";
    for my $name (qw(baseline repeated distinct invalid)) {
        my ($a, $b) = ($result{$name}, $result{"${name}_$label"});
        printf "%-10s %14.3f %14.3f %10.3f %7.2f/%-6.2f %7.2f/%-6.2f\n", $name, $a->{ratio}, $b->{ratio},
            $a->{ratio} / $b->{ratio}, $a->{extra_us}, $b->{extra_us}, $a->{module_us}, $b->{module_us};
    }
    print "\n";
}
my $missed = 0;
for my $t (sort keys %targets) {
    my ($value, $op, $limit, $beside) = @{ $targets{$t} };
    my $met = $op eq '>=' ? $value >= $limit : $value <= $limit;
    $missed++ unless $met;
    printf "%-39s %7.3f %s %.2f  %s%s\n", $t, $value, $op, $limit, $met ? 'met' : 'MISSED', $beside ? "  ($beside)" : '';
}

my $cpu = `lscpu 2>/dev/null` =~ /Model name:\s+(.+)/ ? $1 : 'unknown CPU';
my $report = {
    date => scalar(gmtime) . ' UTC', machine => "$cpu, " . `nproc` =~ s/\s+//r . ' CPUs',
    nginx => `/usr/sbin/nginx -v 2>&1` =~ s/\s+$//r, rounds => $rounds, duration_s => $duration,
    scenarios => \%result, micro_us => \%micro,
    worker_rss_kib => { before => $rss_before, after_200k_distinct => $rss_after },
    two_workers_reuseport => \%workers,
    targets => { map { $_ => { value => $targets{$_}[0], limit => "$targets{$_}[1] $targets{$_}[2]" } } keys %targets },
};
open my $out, '>', "$dir/results.json" or die $!;
print $out JSON::PP->new->pretty->canonical->encode($report);
print "\nwritten to $dir/results.json\n";
exit($missed ? 1 : 0);
