package Test::Nginx::Util;

# Engine of the InsiteChart Edge Test::Nginx runner: nginx.conf generation,
# process management (one real multi-process nginx per block), a small HTTP
# client on IO::Socket::INET and the checks.  Test::Nginx::Socket is the
# Test::Base front end that .t files load; this module has no side effect on
# load, so helpers (Insite::Services) may reuse its HTTP client.

use strict;
use warnings;

use Cwd ();
use Errno ();
use Exporter 'import';
use File::Path ();
use File::Spec ();
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Socket ();
use Test::More ();
use Time::HiRes ();

our @EXPORT_OK = qw(
    run_tests run_test repeat_each blocks_count no_shuffle master_on
    master_off master_process_enabled workers worker_connections log_level
    env_to_nginx no_long_string add_block_preprocessor
    add_response_body_check add_cleanup_handler server_root html_dir
    server_port server_port_for_client server_name server_addr
    config_preamble no_root_location timeout bail_out no_nginx_manager
    check_accum_error_log use_hup is_str
    free_port http_roundtrip build_request expand_env
    $ServerPort $ServerPortForClient $ServerRoot $HtmlDir $ServerName
    $ServerAddr $NginxBinary $LogLevel $RepeatEach
);

our $NginxBinary = $ENV{TEST_NGINX_BINARY} || find_nginx();
our $ServerRoot  = abs_path_of($ENV{TEST_NGINX_SERVROOT} || 't/servroot');
our $HtmlDir     = "$ServerRoot/html";
our $ServerName  = 'localhost';
our $ServerAddr  = '127.0.0.1';
our $ServerPort  = $ENV{TEST_NGINX_PORT} || free_port();
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $LogLevel    = $ENV{TEST_NGINX_LOG_LEVEL} || 'info';
our $Timeout     = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $NoClean     = $ENV{TEST_NGINX_NO_CLEAN} || 0;
our $RepeatEach  = 1;
our $MasterOn    = 1;
our $Workers     = 2;
our $WorkerConnections = 1024;
our $ConfigPreamble = '';
our $NoRootLocation = 0;
our $NoLongString   = 0;
our @EnvToNginx;
our @BlockPreprocessors;
our @ResponseBodyChecks;
our @CleanupHandlers;

# log lines that fail a block unless its error_log section expects them
our $BadLogRe = qr/\[(?:alert|emerg|crit)\]|AddressSanitizer|LeakSanitizer|runtime error:/;

$ENV{TEST_NGINX_SERVER_PORT} = $ServerPort;
$ENV{TEST_NGINX_SERVROOT}    = $ServerRoot;
$ENV{TEST_NGINX_HTML_DIR}    = $HtmlDir;

my $Running;            # { pid => master pid, pgid => ..., started => time }

# -------------------------------------------------------------------------
# small helpers

sub find_nginx {
    for my $dir (File::Spec->path) {
        return "$dir/nginx" if -x "$dir/nginx" && !-d "$dir/nginx";
    }
    return '/usr/sbin/nginx';
}

sub abs_path_of {
    my ($p) = @_;
    return File::Spec->rel2abs($p);
}

sub free_port {
    my $s = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
        Listen => 1, ReuseAddr => 0,
    ) or die "free_port: cannot bind 127.0.0.1:0: $!\n";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub repeat_each { $RepeatEach = shift if @_; return $RepeatEach }
sub no_shuffle { return }        # blocks always run in file order
sub master_on  { $MasterOn = 1; return }
sub master_off { $MasterOn = 0; return }
sub master_process_enabled { $MasterOn = shift if @_; return $MasterOn }
sub workers    { $Workers = shift if @_; return $Workers }
sub worker_connections { $WorkerConnections = shift if @_; return $WorkerConnections }
sub log_level  { $LogLevel = shift if @_; return $LogLevel }
sub env_to_nginx { push @EnvToNginx, @_; return }
sub no_long_string { $NoLongString = 1; return }
sub add_block_preprocessor { push @BlockPreprocessors, shift; return }
sub add_response_body_check { push @ResponseBodyChecks, shift; return }
sub add_cleanup_handler { push @CleanupHandlers, shift; return }
sub server_root { return $ServerRoot }
sub html_dir    { return $HtmlDir }
sub server_port { $ServerPort = shift if @_; return $ServerPort }
sub server_port_for_client { $ServerPortForClient = shift if @_; return $ServerPortForClient }
sub server_name { $ServerName = shift if @_; return $ServerName }
sub server_addr { $ServerAddr = shift if @_; return $ServerAddr }
sub config_preamble { $ConfigPreamble = shift if @_; return $ConfigPreamble }
sub no_root_location { $NoRootLocation = 1; return }
sub timeout { $Timeout = shift if @_; return $Timeout }
sub no_nginx_manager { return }  # accepted for compatibility; ignored
sub check_accum_error_log { return }
sub use_hup { return }
sub is_str { my ($got, $exp, $name) = @_; return Test::More::is($got, $exp, $name) }

sub bail_out {
    my $msg = join '', @_;
    stop_nginx();
    Test::More::BAIL_OUT($msg);
}

# "$TEST_NGINX_FOO" -> $ENV{TEST_NGINX_FOO}; undefined variables are errors
sub expand_env {
    my ($text, $missing) = @_;
    return $text unless defined $text;
    if (ref $text eq 'ARRAY') {
        return [ map { expand_env($_, $missing) } @$text ];
    }
    return $text if ref $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        if (defined $ENV{$1}) { $ENV{$1} }
        else { push @$missing, $1 if $missing; "\$$1" }
    }ge;
    return $text;
}

sub parse_duration {
    my ($v) = @_;
    return undef unless defined $v && $v =~ /\S/;
    $v =~ s/^\s+|\s+$//g;
    return $1 / 1000 if $v =~ /^(\d+(?:\.\d+)?)ms$/;
    return $1 if $v =~ /^(\d+(?:\.\d+)?)s?$/;
    die "bad duration \"$v\"\n";
}

sub slurp {
    my ($path) = @_;
    open my $fh, '<', $path or return '';
    local $/;
    my $s = <$fh>;
    close $fh;
    return defined $s ? $s : '';
}

sub spew {
    my ($path, $content) = @_;
    open my $fh, '>', $path or die "cannot write $path: $!\n";
    print {$fh} $content;
    close $fh or die "cannot write $path: $!\n";
}

# -------------------------------------------------------------------------
# nginx configuration

sub prepare_servroot {
    my $root = $ServerRoot;
    if (-d $root && !$NoClean) {
        File::Path::remove_tree($root, { error => \my $err });
        die "cannot clean $root\n" if $err && @$err;
    }
    for my $d (qw(conf logs html client_body_temp proxy_temp fastcgi_temp
                  uwsgi_temp scgi_temp))
    {
        File::Path::make_path("$root/$d");
    }
    # stale logs from a previous block must not leak into this one
    for my $f (qw(error.log access.log stderr.log)) {
        unlink "$root/logs/$f";
    }
}

sub write_user_files {
    my ($block) = @_;
    my $files = scalar($block->user_files);
    return unless defined $files;
    my @list;
    if (ref $files eq 'ARRAY') {
        @list = map { ref $_ ? [ @$_[0, 1] ] : () } @$files;
    }
    else {
        while ($files =~ /^>>>\s+(\S+)\s*\n(.*?)(?=^>>>\s|\z)/msg) {
            push @list, [ $1, $2 ];
        }
    }
    for my $f (@list) {
        my ($name, $body) = @$f;
        my $path = $name =~ m{^/} ? $name : "$HtmlDir/$name";
        my ($vol, $dir) = File::Spec->splitpath($path);
        File::Path::make_path($dir) if length $dir;
        spew($path, $body);
    }
}

sub gen_config {
    my ($block, $missing) = @_;

    my $main_config = expand_env(scalar($block->main_config) // '', $missing);
    my $http_config = expand_env(scalar($block->http_config) // '', $missing);
    my $config      = expand_env(scalar($block->config) // '', $missing);
    my $preamble    = expand_env($ConfigPreamble, $missing);
    my $level       = scalar($block->log_level) // $LogLevel;
    $level =~ s/^\s+|\s+$//g;
    my $r = $ServerRoot;

    my $conf = "# generated by t/lib/Test/Nginx (InsiteChart Edge)\n";
    for my $so (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '') {
        $conf .= "load_module " . abs_path_of($so) . ";\n";
    }
    $conf .= "daemon off;\n";
    $conf .= "master_process " . ($MasterOn ? 'on' : 'off') . ";\n"
        unless $main_config =~ /^\s*master_process\s/m;
    $conf .= "worker_processes $Workers;\n"
        unless $main_config =~ /^\s*worker_processes\s/m;
    $conf .= "user root;\n"
        if $> == 0 && $main_config !~ /^\s*user\s/m;
    $conf .= "error_log $r/logs/error.log $level;\n";
    $conf .= "pid $r/logs/nginx.pid;\n";
    $conf .= "env $_;\n" for @EnvToNginx;
    $conf .= "$main_config\n";

    my $root_location = '';
    if (!$NoRootLocation && $config !~ /\blocation\s+\/\s*\{/) {
        $root_location = "        location / {\n            root $HtmlDir;\n"
                       . "            index index.html index.htm;\n        }\n";
    }

    $conf .= <<"EOC";
http {
    access_log $r/logs/access.log;
    default_type text/plain;
    keepalive_timeout 68;
    client_body_temp_path $r/client_body_temp;
    proxy_temp_path $r/proxy_temp;
    fastcgi_temp_path $r/fastcgi_temp;
    uwsgi_temp_path $r/uwsgi_temp;
    scgi_temp_path $r/scgi_temp;

$http_config

    server {
        listen $ServerAddr:$ServerPort;
        server_name $ServerName;
        client_max_body_size 30M;

        # Begin preamble config...
$preamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

events {
    accept_mutex off;
    worker_connections $WorkerConnections;
}
EOC
    return $conf;
}

# -------------------------------------------------------------------------
# process management

sub proc_alive {
    my ($pid) = @_;
    return kill(0, $pid) || $!{EPERM};
}

sub pgroup_alive {
    my ($pgid) = @_;
    return kill(0, -$pgid) || $!{EPERM};
}

sub reap {
    my ($pid) = @_;
    my $r = waitpid($pid, POSIX::WNOHANG());
    return $r == $pid || $r == -1;
}

sub listening {
    my ($port) = @_;
    my $hex = sprintf '%04X', $port;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        while (<$fh>) {
            my @c = split ' ';
            next unless @c > 3;
            return 1 if $c[1] =~ /:$hex$/ && $c[3] eq '0A';
        }
    }
    return 0;
}

sub children_of {
    my ($ppid) = @_;
    my @kids;
    opendir my $dh, '/proc' or return;
    for my $p (grep { /^\d+$/ } readdir $dh) {
        my $stat = slurp("/proc/$p/stat");
        next unless $stat =~ /\)\s+\S+\s+(\d+)/;
        push @kids, $p if $1 == $ppid;
    }
    return @kids;
}

# kill whatever a previous, killed run left behind in this servroot
sub kill_stale {
    my $pidfile = "$ServerRoot/logs/nginx.pid";
    my $pid = slurp($pidfile);
    return unless $pid =~ /^(\d+)\s*$/;
    $pid = $1;
    my $comm = slurp("/proc/$pid/comm");
    return unless $comm =~ /nginx/;
    Test::More::diag("killing stale nginx $pid left by an earlier run");
    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    unlink $pidfile;
}

# returns undef on success, an error message otherwise
sub start_nginx {
    my $log = "$ServerRoot/logs/stderr.log";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        exec $NginxBinary, '-p', "$ServerRoot/", '-c', "$ServerRoot/conf/nginx.conf"
            or do { print STDERR "exec $NginxBinary: $!\n"; POSIX::_exit(127) };
    }
    POSIX::setpgid($pid, $pid);   # also from the parent: no race with kill
    $Running = { pid => $pid, pgid => $pid, reaped => 0 };

    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline) {
        if (reap($pid)) {
            $Running->{reaped} = 1;
            my $status = $? >> 8;
            stop_nginx();
            return "nginx exited during startup (status $status)";
        }
        if (listening($ServerPort)) {
            return undef unless $MasterOn;
            # the master listens before it forks: wait for the workers
            my $want = $Workers =~ /^\d+$/ ? $Workers : 1;
            my $wdeadline = Time::HiRes::time() + 5;
            while (Time::HiRes::time() < $wdeadline) {
                return undef if children_of($pid) >= $want;
                Time::HiRes::sleep(0.01);
            }
            return undef;
        }
        Time::HiRes::sleep(0.01);
    }
    stop_nginx();
    return "nginx did not listen on $ServerAddr:$ServerPort within 10s";
}

# QUIT, then TERM, then KILL the whole process group; waits until every
# process of the group is gone.  Safe to call when nothing runs.
sub stop_nginx {
    my ($fast) = @_;
    my $r = $Running or return;
    my ($pid, $pgid) = @$r{qw(pid pgid)};
    my @steps = ([ 'QUIT', 4 ], [ 'TERM', 2 ], [ 'KILL', 5 ]);
    shift @steps if $fast;      # interrupted run: no graceful shutdown
    for my $step (@steps) {
        my ($sig, $secs) = @$step;
        if (!$r->{reaped}) {
            kill $sig, $pid;
        }
        kill $sig, -$pgid if $sig ne 'QUIT';   # workers obey their master
        my $deadline = Time::HiRes::time() + $secs;
        while (Time::HiRes::time() < $deadline) {
            $r->{reaped} ||= reap($pid);
            last if $r->{reaped} && !pgroup_alive($pgid);
            Time::HiRes::sleep(0.01);
        }
        if ($r->{reaped} && !pgroup_alive($pgid)) {
            undef $Running;
            return $sig;
        }
        Test::More::diag("nginx $pid did not exit after SIG$sig")
            unless $sig eq 'KILL';
    }
    undef $Running;
    return 'KILL';
}

END {
    my $rc = $?;
    stop_nginx();
    $_->() for @CleanupHandlers;
    $? = $rc;
}

for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub {
        stop_nginx(1);
        $SIG{$sig} = 'DEFAULT';
        kill $sig, $$;
    };
}

# -------------------------------------------------------------------------
# HTTP client

sub parse_more_headers {
    my ($in) = @_;
    my ($out, $chunked) = ('', 0);
    for my $h (split /\n+/, $in // '') {
        next if $h =~ /^\s*#/ || $h !~ /\S/;
        my ($k, $v) = split /:\s*/, $h, 2;
        $v //= '';
        $chunked = 1 if lc $k eq 'transfer-encoding' && lc $v eq 'chunked';
        $out .= "$k: $v\r\n";
    }
    return ($out, $chunked);
}

# "GET /x\nbody" (Test::Nginx request syntax) -> bytes on the wire
sub build_request {
    my ($req, $more_headers, $conn) = @_;
    $req =~ s/^(?:\s*#[^\n]*\n|\s+)+//;
    my ($first, $content) = split /\n/, $req, 2;
    $first //= '';
    my ($meth, $url, $ver) = split ' ', $first;
    die "request line should be 'METHOD [URL [VERSION]]', got \"$first\"\n"
        unless defined $meth;
    $url //= '/';
    $ver //= 'HTTP/1.1';
    my ($hdr, $chunked) = parse_more_headers($more_headers);
    my $head = "$meth $url $ver\r\n";
    $head .= "Host: $ServerName\r\n" unless $hdr =~ /(?:^|\n)Host:/i;
    $head .= "Connection: " . ($conn // 'close') . "\r\n"
        unless $hdr =~ /(?:^|\n)Connection:/i;
    $head .= $hdr;
    $content //= '';
    if (length $content && !$chunked && $hdr !~ /(?:^|\n)Content-Length:/i) {
        $content =~ s/^\s+|\s+$//gs;
        $head .= "Content-Length: " . length($content) . "\r\n";
    }
    return "$head\r\n$content";
}

# Parses $buf; returns a response hash once complete (or $eof forces it).
sub try_parse_response {
    my ($buf, $eof, $is_head) = @_;
    my $start = 0;
    my ($status, $proto, $reason, @hlines, $hend);
    for (;;) {
        $hend = index($buf, "\r\n\r\n", $start);
        my $sep = 4;
        if ($hend < 0) {
            $hend = index($buf, "\n\n", $start);
            $sep = 2;
        }
        return undef if $hend < 0;
        my $head = substr($buf, $start, $hend - $start);
        @hlines = split /\r?\n/, $head;
        my $sl = shift @hlines // '';
        ($proto, $status, $reason) = $sl =~ m{^(HTTP/\d\.\d)\s+(\d{3})\s*(.*)$}
            or return { error => "bad status line: \"$sl\"", raw => $buf };
        $hend += $sep;
        last unless $status =~ /^1\d\d$/ && $status != 101;
        $start = $hend;     # skip interim responses (100 Continue)
    }

    my (%h, @order);
    for my $l (@hlines) {
        my ($k, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        my $lk = lc $k;
        push @order, [ $k, $v ];
        $h{$lk} = exists $h{$lk} ? "$h{$lk}, $v" : $v;
    }
    my %res = (status => $status + 0, proto => $proto, reason => $reason,
               headers => \%h, header_list => \@order,
               raw_headers => substr($buf, 0, $hend), raw => $buf);

    my $rest = substr($buf, $hend);
    if ($is_head || $status == 204 || $status == 304) {
        $res{body} = '';
        return \%res;
    }
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my ($body, $pos) = ('', 0);
        for (;;) {
            my $le = index($rest, "\n", $pos);
            if ($le < 0) {
                return undef unless $eof;
                $res{error} = 'truncated chunked body';
                last;
            }
            my $line = substr($rest, $pos, $le - $pos);
            my ($size) = $line =~ /^([0-9a-fA-F]+)/;
            if (!defined $size) {
                $res{error} = "bad chunk size line \"$line\"";
                last;
            }
            $size = hex $size;
            $pos = $le + 1;
            if ($size == 0) {
                # trailers end with an empty line
                my $te = index($rest, "\r\n", $pos) == $pos ? $pos + 2
                       : index($rest, "\r\n\r\n", $pos) >= 0 ? 1 : -1;
                return undef if $te < 0 && !$eof;
                last;
            }
            if (length($rest) < $pos + $size + 2) {
                return undef unless $eof;
                $body .= substr($rest, $pos);
                $res{error} = 'truncated chunked body';
                last;
            }
            $body .= substr($rest, $pos, $size);
            $pos += $size;
            $pos += substr($rest, $pos, 2) eq "\r\n" ? 2 : 1;
        }
        $res{body} = $body;
        return \%res;
    }
    if (defined $h{'content-length'} && $h{'content-length'} =~ /^(\d+)/) {
        my $len = $1;
        if (length($rest) < $len) {
            return undef unless $eof;
            $res{error} = "truncated body: got " . length($rest) . " of $len bytes";
            $res{body} = $rest;
            return \%res;
        }
        $res{body} = substr($rest, 0, $len);
        return \%res;
    }
    return undef unless $eof;          # body delimited by connection close
    $res{body} = $rest;
    return \%res;
}

# Sends $data (a string or an array of pieces) to $host:$port and reads one
# response.  Returns a hash: status, headers (lower-case names), body,
# elapsed, and error (connect failure, timeout, ...) when something failed.
sub http_roundtrip {
    my (%o) = @_;
    my $timeout = $o{timeout} // $Timeout;
    my $t0 = Time::HiRes::time();
    my $deadline = $t0 + $timeout;
    my $fail = sub {
        return { error => $_[0], elapsed => Time::HiRes::time() - $t0,
                 raw => $_[1] // '', status => undef, headers => {},
                 body => undef };
    };

    my $sock = IO::Socket::INET->new(
        PeerAddr => $o{host} // '127.0.0.1', PeerPort => $o{port},
        Proto => 'tcp', Timeout => $timeout,
    ) or return $fail->("connect to port $o{port} failed: $@");
    $sock->autoflush(1);
    binmode $sock;
    my $sel = IO::Select->new($sock);

    my @pieces = ref $o{data} eq 'ARRAY' ? @{ $o{data} } : ($o{data});
    for my $i (0 .. $#pieces) {
        my $out = $pieces[$i];
        while (length $out) {
            my $left = $deadline - Time::HiRes::time();
            return $fail->('timeout while sending the request')
                if $left <= 0 || !IO::Select->new($sock)->can_write($left);
            my $n = syswrite($sock, $out);
            if (!defined $n) {
                next if $!{EINTR} || $!{EAGAIN};
                last if $!{EPIPE} || $!{ECONNRESET};  # read what came back
                return $fail->("write failed: $!");
            }
            substr($out, 0, $n, '');
        }
        Time::HiRes::sleep($o{piece_delay} // 0.01) if $i < $#pieces;
    }

    my $buf = '';
    my $is_head = ($o{method} // '') eq 'HEAD';
    for (;;) {
        my $left = $deadline - Time::HiRes::time();
        if ($left <= 0 || !$sel->can_read($left)) {
            my $res = try_parse_response($buf, 1, $is_head);
            $res = { raw => $buf, headers => {}, body => undef }
                unless $res && !$res->{error};
            $res->{error} = "timeout after ${timeout}s waiting for the response";
            $res->{timed_out} = 1;
            $res->{elapsed} = Time::HiRes::time() - $t0;
            close $sock;
            return $res;
        }
        my $n = sysread($sock, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            $n = 0;   # ECONNRESET: parse what we have
        }
        my $res = try_parse_response($buf, $n == 0, $is_head);
        if ($res) {
            $res->{elapsed} = Time::HiRes::time() - $t0;
            close $sock;
            return $res;
        }
        if ($n == 0) {
            close $sock;
            return $fail->(length $buf ? 'connection closed mid-response'
                                       : 'connection closed without a response',
                           $buf);
        }
    }
}

# -------------------------------------------------------------------------
# checks

sub log_patterns {
    my ($v) = @_;
    return () unless defined $v;
    return map { log_patterns($_) } @$v if ref $v eq 'ARRAY';
    return ($v) if ref $v;
    return grep { /\S/ } split /\n/, $v;
}

sub pat_matches {
    my ($pat, $line) = @_;
    return ref $pat eq 'Regexp' ? $line =~ $pat : index($line, $pat) >= 0;
}

sub pat_name {
    my ($pat) = @_;
    return ref $pat eq 'Regexp' ? "$pat" : "\"$pat\"";
}

sub short {
    my ($s) = @_;
    return 'undef' unless defined $s;
    return $s if !$NoLongString || length $s < 200;
    return substr($s, 0, 200) . '... (' . length($s) . ' bytes)';
}

sub check_str {
    my ($got, $exp, $name) = @_;
    if (ref $exp eq 'Regexp') {
        return Test::More::like($got // '', $exp, $name);
    }
    return Test::More::is($got, $exp, $name) unless $NoLongString;
    my $ok = Test::More::ok(defined $got && $got eq $exp, $name);
    Test::More::diag("     got: " . short($got) . "\nexpected: " . short($exp))
        unless $ok;
    return $ok;
}

sub pick {
    my ($v, $i) = @_;
    return ref $v eq 'ARRAY' ? $v->[$i] : $v;
}

sub check_response {
    my ($block, $res, $i, $name) = @_;
    my $tag = ref scalar($block->request) eq 'ARRAY' ? " (req $i)" : '';

    if ($res->{timed_out} && defined scalar($block->abort)) {
        # the block expects the client to give up: no status, no body
    }
    elsif ($res->{error}) {
        Test::More::fail("$name - request$tag: $res->{error}");
        Test::More::diag("raw response so far: " . short($res->{raw}))
            if defined $res->{raw} && length $res->{raw};
    }

    my $code = pick(scalar($block->error_code), $i);
    $code = 200 if !defined $code && !defined scalar($block->ignore_response) && !defined scalar($block->abort);
    if (defined $code) {
        $code =~ s/^\s+|\s+$//g;
        Test::More::is($res->{status} // '', $code, "$name - status code ok$tag");
    }

    for my $line (split /\n/, pick(scalar($block->response_headers), $i) // '') {
        next unless $line =~ /\S/;
        if ($line =~ /^\s*!\s*([^:\s]+)\s*$/) {
            my $k = $1;
            Test::More::ok(!exists $res->{headers}{lc $k},
                           "$name - header $k absent$tag")
                or Test::More::diag("$k: $res->{headers}{lc $k}");
            next;
        }
        my ($k, $v) = $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/
            or die "bad response_headers line \"$line\"\n";
        if ($v eq '') {
            Test::More::ok(($res->{headers}{lc $k} // '') eq '',
                           "$name - header $k empty or absent$tag");
        }
        else {
            check_str($res->{headers}{lc $k}, $v, "$name - header $k ok$tag");
        }
    }

    for my $line (split /\n/, pick(scalar($block->response_headers_like), $i) // '') {
        next unless $line =~ /\S/;
        my ($k, $v) = $line =~ /^\s*([^:]+?)\s*:\s*(.*?)\s*$/
            or die "bad response_headers_like line \"$line\"\n";
        Test::More::like($res->{headers}{lc $k} // '', qr/$v/s,
                         "$name - header $k like ok$tag");
    }

    my $body = $res->{body};
    if (defined(my $exp = pick(scalar($block->response_body), $i))) {
        check_str($body, $exp, "$name - response_body - response is expected$tag");
    }
    if (defined(my $re = pick(scalar($block->response_body_like), $i))) {
        $re = qr/$re/sm unless ref $re eq 'Regexp';
        Test::More::like($body // '', $re, "$name - response_body_like - response is expected$tag");
    }
    if (defined(my $re = pick(scalar($block->response_body_unlike), $i))) {
        $re = qr/$re/sm unless ref $re eq 'Regexp';
        Test::More::unlike($body // '', $re, "$name - response_body_unlike - response is expected$tag");
    }
    for my $check (@ResponseBodyChecks) {
        $check->($block, $body, $i, 0, 0);
    }
}

sub check_logs {
    my ($block, $name, $log) = @_;
    my @lines = split /\n/, $log;
    my @want = log_patterns(scalar($block->error_log));

    for my $pat (@want) {
        my $hit = grep { pat_matches($pat, $_) } @lines;
        Test::More::ok($hit, "$name - pattern " . pat_name($pat) . " should match a line in error.log")
            or Test::More::diag("last lines of the log:\n"
                                . join("\n", @lines > 15 ? @lines[-15 .. -1] : @lines));
    }
    for my $pat (log_patterns(scalar($block->no_error_log))) {
        my @hits = grep { pat_matches($pat, $_) } @lines;
        Test::More::ok(!@hits, "$name - pattern " . pat_name($pat) . " should not match any line in error.log")
            or Test::More::diag("matched: $hits[0]");
    }

    if (defined(my $grep = scalar($block->grep_error_log))) {
        my @pats = ref $grep eq 'ARRAY' ? @$grep : ($grep);
        my $out = '';
        for my $line (@lines) {
            for my $p (@pats) {
                my $re = ref $p eq 'Regexp' ? $p : qr/\Q$p\E/;
                while ($line =~ /($re)/g) { $out .= "$1\n" }
            }
        }
        my $exp = scalar($block->grep_error_log_out);
        $exp = $exp->[0] if ref $exp eq 'ARRAY';
        check_str($out, $exp // '', "$name - grep_error_log_out ok");
    }

    my @bad = grep {
        my $l = $_;
        $l =~ $BadLogRe && !grep { pat_matches($_, $l) } @want;
    } @lines;
    if (@bad) {
        Test::More::fail("$name - unexpected [alert]/[crit]/[emerg] or sanitizer"
                         . " report in the logs");
        Test::More::diag(join "\n", @bad[0 .. ($#bad > 19 ? 19 : $#bad)]);
    }
}

sub collect_logs {
    return slurp("$ServerRoot/logs/error.log") . slurp("$ServerRoot/logs/stderr.log");
}

sub emerg_text {
    my ($log) = @_;
    my @l = grep { /\[emerg\]|\[alert\]|\[crit\]|exec / } split /\n/, $log;
    @l = (split /\n/, $log)[-10 .. -1] unless @l;
    return join "\n", grep { defined } @l;
}

# -------------------------------------------------------------------------
# running blocks

sub block_requests {
    my ($block, $missing) = @_;
    my @reqs;
    if (defined(my $raw = scalar($block->raw_request))) {
        $raw = expand_env($raw, $missing);
        return ([ $raw, '' ]);
    }
    my $req = scalar($block->request);
    return () unless defined $req;
    $req = expand_env($req, $missing);
    my $mh = expand_env(scalar($block->more_headers) // '', $missing);
    my @list = ref $req eq 'ARRAY' ? @$req : ($req);
    for my $i (0 .. $#list) {
        my $r = $list[$i];
        my $h = ref $mh eq 'ARRAY' ? ($mh->[$i] // '') : $mh;
        # an element may itself be an array of raw pieces
        if (ref $r eq 'ARRAY') {
            push @reqs, [ $r, '' ];
            next;
        }
        my ($meth) = $r =~ /^(?:\s*#[^\n]*\n|\s)*(\S+)/;
        push @reqs, [ build_request($r, $h, 'close'), $meth // '' ];
    }
    return @reqs;
}

sub run_block_once {
    my ($block, $name) = @_;

    my @missing;
    prepare_servroot();
    write_user_files($block);
    my $conf = gen_config($block, \@missing);
    my @reqs = block_requests($block, \@missing);
    if (@missing) {
        my %seen;
        Test::More::fail("$name - no environment variable for "
                         . join(', ', grep { !$seen{$_}++ } @missing));
        return;
    }
    spew("$ServerRoot/conf/nginx.conf", $conf);

    my $err = start_nginx();
    my $log = collect_logs();

    if (defined scalar($block->must_die)) {
        if (!$err) {
            stop_nginx();
            Test::More::fail("$name - nginx should have failed to start");
            return;
        }
        my @lines = split /\n/, $log;
        for my $pat (log_patterns(scalar($block->error_log))) {
            Test::More::ok((grep { pat_matches($pat, $_) } @lines),
                           "$name - pattern " . pat_name($pat) . " should match a line in the startup output")
                or Test::More::diag("startup output:\n$log");
        }
        return;
    }

    if ($err) {
        Test::More::fail("$name - nginx failed to start: $err");
        Test::More::diag(emerg_text($log));
        return;
    }

    my $timeout = parse_duration(scalar($block->timeout)) // $Timeout;
    if (defined(my $ready = $block->ready_request)) {
        # the workers' asynchronous start (a Redis connection, say) is done
        # only when this request's body matches ready_like: asked until it
        # does, up to 10 s, so the block's requests meet a started server
        chomp $ready;
        my $like = $block->ready_like;
        $like = ref $like ? $like : qr/$like/;
        my ($meth) = $ready =~ /^(\S+)/;
        my $deadline = Time::HiRes::time() + 10;
        my $body = '';
        while (Time::HiRes::time() < $deadline) {
            my $res = http_roundtrip(port => $ServerPortForClient,
                                     data => build_request($ready, "", "close"), timeout => $timeout,
                                     method => $meth);
            $body = $res->{body} // '';
            last if $body =~ $like;
            Time::HiRes::sleep(0.05);
        }
        Test::More::like($body, $like, "$name - ready ($ready)");
    }
    for my $i (0 .. $#reqs) {
        my ($data, $meth) = @{ $reqs[$i] };
        my $res = http_roundtrip(port => $ServerPortForClient, data => $data,
                                 timeout => $timeout, method => $meth);
        check_response($block, $res, $i, $name);
    }

    if (defined(my $wait = parse_duration(scalar($block->wait)))) {
        Time::HiRes::sleep($wait);
    }
    stop_nginx();
    check_logs($block, $name, collect_logs());
}

sub run_test {
    my ($block) = @_;
    my $name = scalar($block->name);
    $_->($block) for @BlockPreprocessors;
    for my $rep (1 .. $RepeatEach) {
        my $ok = eval { run_block_once($block, $name); 1 };
        my $err = $@;
        stop_nginx();
        if (!$ok) {
            chomp $err;
            Test::More::fail("$name - runner error: $err");
        }
    }
}

sub run_tests {
    kill_stale();
    for my $block (Test::Base::blocks()) {
        run_test($block);
    }
    stop_nginx();
    # keep the servroot for inspection when asked to or when a test failed
    if ($NoClean || !Test::More->builder->is_passing) {
        Test::More::diag("nginx files of the last block kept in $ServerRoot")
            unless Test::More->builder->is_passing;
    }
    else {
        File::Path::remove_tree($ServerRoot);
    }
}

sub blocks_count { return scalar(my @b = Test::Base::blocks()) }

1;
