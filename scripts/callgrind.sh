# Instructions per request counted by valgrind's callgrind inside nginx (sourced by
# scripts/bench-instructions and scripts/bench-growth). One nginx at a time, in one process
# (master_process off), listening on 127.0.0.1:$CALLGRIND_PORT.

CALLGRIND_PORT=${CALLGRIND_PORT:-8090}
callgrind_pid= callgrind_prefix=

# Sends $2 requests with the values of file $3 (in turn, from line $4, default 0) to path $1 over
# one kept-alive connection, each answered before the next: a file named session* holds Cookie
# header values, any other bearer tokens; a value "-" sends neither. Each answer must succeed,
# or have status $CALLGRIND_STATUS when that is set.
callgrind_load() {
    perl -MHTTP::Tiny -e '
        my ($url, $n, $file, $from) = @ARGV;
        open my $fh, "<", $file or die "$file: $!";
        chomp(my @values = <$fh>);
        my $http = HTTP::Tiny->new(keep_alive => 1, timeout => 120);
        my $cookie = $file =~ m{/sessions?-[^/]*$};
        for my $i (0 .. $n - 1) {
            my $v = $values[($from + $i) % @values];
            my $headers = $v eq "-" ? {} : $cookie ? { Cookie => $v } : { Authorization => "Bearer $v" };
            my $res = $http->get($url, { headers => $headers });
            my $want = $ENV{CALLGRIND_STATUS};
            die "$url: $res->{status} $res->{content}\n" unless $want ? $res->{status} == $want : $res->{success};
        }' "http://127.0.0.1:$CALLGRIND_PORT$1" "$2" "$3" "${4:-0}"
}

# Starts Debian's nginx under callgrind with the configuration under prefix $1 (conf/nginx.conf,
# which must not start a master process or a daemon), and waits until path $2 answers.
callgrind_start() {
    local prefix=$1 ready=$2 user=()
    callgrind_prefix=$prefix
    [ "$(id -u)" = 0 ] && user=(-g 'user root;')
    valgrind --tool=callgrind --callgrind-out-file="$prefix/callgrind.%p.out" \
        /usr/sbin/nginx -p "$prefix/" -c conf/nginx.conf "${user[@]}" 2>"$prefix/valgrind.log" &
    callgrind_pid=$!
    for _ in $(seq 600); do
        curl -s -o /dev/null "http://127.0.0.1:$CALLGRIND_PORT$ready" && return 0
        kill -0 "$callgrind_pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$prefix/valgrind.log" "$prefix/logs/error.log" >&2 2>/dev/null
    die "nginx under callgrind did not answer $ready"
}

# Instructions per request of $2 requests to path $1 with the values of file $3, after a
# warm-up of 50 with the values that follow those (a file of never-seen values needs $2 + 50 of
# them). The profile is the newest dump under the prefix (callgrind.PID.out.N).
callgrind_count() {
    local path=$1 n=$2 file=$3 dump total
    callgrind_load "$path" 50 "$file" "$n" || return 1
    callgrind_control -z "$callgrind_pid" >/dev/null 2>&1
    callgrind_load "$path" "$n" "$file" || return 1
    callgrind_control -d "$callgrind_pid" >/dev/null 2>&1
    dump=$(ls "$callgrind_prefix"/callgrind.*.out.* | sort -t. -k4 -n | tail -n 1)
    total=$(grep -m1 -E '^(summary|totals):' "$dump" | awk '{print $2}')
    echo $((total / n))
}

callgrind_stop() {
    kill "$callgrind_pid" 2>/dev/null || true
    wait "$callgrind_pid" 2>/dev/null || true
    callgrind_pid=
}
