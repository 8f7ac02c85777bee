package Insite::Services;

# Helpers for tests that control their own servers.
#
#   use Insite::Services qw(free_port wait_port start_redis http_request);
#   my $r = start_redis();          # real redis-server on 127.0.0.1:<free>
#   $r->cli('SET', 'k', 'v');       # runs redis-cli, returns its output
#   $r->freeze; ... $r->thaw;       # SIGSTOP / SIGCONT: a Redis that hangs
#   $r->kill9; $r->restart;         # crash it, bring it back (same port/dir)
#   $r->stop;                       # SIGTERM + wait
#
# Every server started here is stopped when the process exits (END block,
# DESTROY, and SIGINT/SIGTERM/SIGHUP), also when the test fails or dies.

use strict;
use warnings;

use Exporter 'import';
use File::Temp ();
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Scalar::Util ();
use Time::HiRes ();

use Test::Nginx::Util ();

our @EXPORT_OK = qw(free_port wait_port start_redis http_request run_cmd spawn);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $RedisServer = $ENV{INSITE_REDIS_SERVER} || 'redis-server';
our $RedisCli    = $ENV{INSITE_REDIS_CLI} || 'redis-cli';

my %Live;          # refaddr => weakened object, for the END cleanup
my $Owner = $$;    # forked children must not stop their parent's servers

sub free_port { return Test::Nginx::Util::free_port() }

# true once something accepts TCP connections on 127.0.0.1:$port
sub wait_port {
    my ($port, $secs) = @_;
    my $deadline = Time::HiRes::time() + ($secs // 10);
    for (;;) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp',
                                      Timeout => 1);
        if ($s) {
            close $s;
            return 1;
        }
        return 0 if Time::HiRes::time() >= $deadline;
        Time::HiRes::sleep(0.02);
    }
}

# Runs a command with a deadline; returns ($output, $exit_status) where
# $exit_status is undef when the command was killed for taking too long.
sub run_cmd {
    my ($timeout, @cmd) = @_;
    pipe(my $r, my $w) or die "pipe: $!\n";
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        close $r;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $w or POSIX::_exit(126);
        open STDERR, '>&', $w or POSIX::_exit(126);
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    close $w;
    my ($out, $deadline) = ('', Time::HiRes::time() + $timeout);
    my $sel = IO::Select->new($r);
    my $timed_out = 0;
    for (;;) {
        my $left = $deadline - Time::HiRes::time();
        if ($left <= 0) { $timed_out = 1; last }
        next unless $sel->can_read($left);
        my $n = sysread($r, $out, 65536, length $out);
        last if !$n && !(defined $n ? 0 : $!{EINTR});
    }
    close $r;
    kill 'KILL', $pid if $timed_out;
    waitpid($pid, 0);
    return ($out, $timed_out ? undef : $? >> 8);
}

# ad-hoc HTTP request; returns { status, headers (lower-case names), body,
# elapsed (seconds), error (set on timeout/connect failure) }
sub http_request {
    my ($port, $method, $path, %o) = @_;
    my $req = "$method $path HTTP/1.1\r\n";
    my @h = ref $o{headers} eq 'HASH' ? %{ $o{headers} }
          : ref $o{headers} eq 'ARRAY' ? @{ $o{headers} } : ();
    my %has;
    while (my ($k, $v) = splice @h, 0, 2) {
        $has{lc $k} = 1;
        $req .= "$k: $v\r\n";
    }
    $req .= "Host: " . ($o{host} // 'localhost') . "\r\n" unless $has{host};
    $req .= "Connection: close\r\n" unless $has{connection};
    if (defined $o{body} && !$has{'content-length'}
        && !$has{'transfer-encoding'})
    {
        $req .= "Content-Length: " . length($o{body}) . "\r\n";
    }
    $req .= "\r\n" . ($o{body} // '');
    return Test::Nginx::Util::http_roundtrip(
        port => $port, host => $o{addr} // '127.0.0.1', data => $req,
        timeout => $o{timeout} // 5, method => $method);
}

sub start_redis { return Insite::Services::Redis->new(@_) }

# Starts a worker binary in the background with %$env added to the
# environment, stdin from /dev/null, stdout and stderr appended to $log;
# returns its pid (the caller stops and reaps it).
sub spawn {
    my ($bin, $env, $log) = @_;
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        $ENV{$_} = $env->{$_} for keys %$env;
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $log or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        exec { $bin } $bin or POSIX::_exit(127);
    }
    return $pid;
}

sub _cleanup_all {
    return unless $$ == $Owner;
    for my $obj (values %Live) {
        $obj->stop if $obj;
    }
}

END {
    my $rc = $?;
    _cleanup_all();
    $? = $rc;
}

for my $sig (qw(INT TERM HUP)) {
    my $prev = $SIG{$sig};
    $SIG{$sig} = sub {
        _cleanup_all();
        if (ref $prev eq 'CODE') {
            $prev->(@_);
        }
        $SIG{$sig} = 'DEFAULT';
        kill $sig, $$;
    };
}

package Insite::Services::Redis;

use strict;
use warnings;

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        port    => $o{port} || Insite::Services::free_port(),
        args    => $o{args} || [],
        timeout => $o{timeout} // 10,
        pid     => undef,
        frozen  => 0,
    }, $class;
    if ($o{dir}) {
        $self->{dir} = $o{dir};
    }
    else {
        $self->{tmp} = File::Temp->newdir('insite-redis-XXXXXX', TMPDIR => 1);
        $self->{dir} = $self->{tmp}->dirname;
    }
    $Live{ Scalar::Util::refaddr($self) } = $self;
    Scalar::Util::weaken($Live{ Scalar::Util::refaddr($self) });
    $self->_spawn;
    return $self;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub dir  { $_[0]{dir} }
sub log_file { "$_[0]{dir}/redis.log" }
sub running { my $s = shift; return defined $s->{pid} }

sub _spawn {
    my ($self) = @_;
    my @cmd = ($RedisServer, '--save', '', '--appendonly', 'no',
               '--bind', '127.0.0.1', '--port', $self->{port},
               '--dir', $self->{dir}, '--daemonize', 'no',
               '--logfile', $self->log_file, @{ $self->{args} });
    my $pid = fork;
    die "fork: $!\n" unless defined $pid;
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $self->log_file or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT or POSIX::_exit(126);
        exec { $cmd[0] } @cmd or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $self->{frozen} = 0;

    my $deadline = Time::HiRes::time() + $self->{timeout};
    while (Time::HiRes::time() < $deadline) {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
            $self->{pid} = undef;
            die "redis-server exited during startup (status " . ($? >> 8)
                . "); log:\n" . Test::Nginx::Util::slurp($self->log_file);
        }
        return $self if $self->ping;
        Time::HiRes::sleep(0.02);
    }
    $self->kill9;
    die "redis-server on port $self->{port} not ready after $self->{timeout}s\n";
}

# PING over a raw socket (no redis-cli fork): true on +PONG
sub ping {
    my ($self, $timeout) = @_;
    $timeout //= 1;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $self->{port}, Proto => 'tcp',
                                  Timeout => $timeout) or return 0;
    syswrite($s, "PING\r\n");
    my $buf = '';
    my $sel = IO::Select->new($s);
    my $deadline = Time::HiRes::time() + $timeout;
    while ($buf !~ /\r\n/) {
        my $left = $deadline - Time::HiRes::time();
        last if $left <= 0 || !$sel->can_read($left);
        last unless sysread($s, $buf, 512, length $buf);
    }
    close $s;
    return $buf =~ /^\+PONG\r\n/ ? 1 : 0;
}

sub _wait_exit {
    my ($self, $secs) = @_;
    my $pid = $self->{pid} or return 1;
    my $deadline = Time::HiRes::time() + $secs;
    while (Time::HiRes::time() < $deadline) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        if ($r == $pid || $r == -1) {
            $self->{pid} = undef;
            return 1;
        }
        Time::HiRes::sleep(0.01);
    }
    return 0;
}

# SIGTERM and wait (SIGKILL after 10 s); safe to call twice
sub stop {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    kill 'CONT', $pid if $self->{frozen};
    $self->{frozen} = 0;
    kill 'TERM', $pid;
    return if $self->_wait_exit(10);
    kill 'KILL', $pid;
    $self->_wait_exit(5);
}

sub kill9 {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    kill 'KILL', $pid;
    $self->{frozen} = 0;
    $self->_wait_exit(5);
}

sub restart {
    my ($self) = @_;
    $self->stop;
    $self->_spawn;
    return $self;
}

sub freeze {
    my ($self) = @_;
    my $pid = $self->{pid} or die "redis is not running\n";
    kill 'STOP', $pid;
    $self->{frozen} = 1;
    return $self;
}

sub thaw {
    my ($self) = @_;
    my $pid = $self->{pid} or die "redis is not running\n";
    kill 'CONT', $pid;
    $self->{frozen} = 0;
    return $self;
}

# redis-cli against this server; returns its output without the trailing
# newline, or undef when it did not answer within `cli_timeout` (default 3 s)
sub cli {
    my ($self, @args) = @_;
    my ($out, $status) = Insite::Services::run_cmd(
        $self->{cli_timeout} // 3,
        $RedisCli, '-h', '127.0.0.1', '-p', $self->{port}, @args);
    return undef unless defined $status;
    $out =~ s/\n\z//;
    return $out;
}

sub cli_timeout { my $s = shift; $s->{cli_timeout} = shift if @_; $s->{cli_timeout} }

sub DESTROY {
    my ($self) = @_;
    return unless $$ == $Owner;
    local ($?, $@, $!);
    $self->stop;
    delete $Live{ Scalar::Util::refaddr($self) };
}

1;
