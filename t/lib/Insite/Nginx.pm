package Insite::Nginx;

# An nginx for tests that act on other servers while nginx runs (kill Redis
# mid-traffic, reload under load): the block format cannot express those.
#
#   my $n = Insite::Nginx->new(http => $http_conf, server => $server_conf);
#   my $res = $n->get('/healthz');          # Insite::Services::http_request
#   $n->reload; $n->error_log; $n->stop;
#
# Same defaults as the block runner: the modules in TEST_NGINX_LOAD_MODULES,
# master_process on, 2 workers, a free port; stop() (also at exit) waits for
# every process, and check_log() fails on [alert]/[emerg]/[crit]/sanitizers.

use strict;
use warnings;

use File::Temp ();
use POSIX ();
use Test::More ();
use Time::HiRes ();

use Test::Nginx::Util ();
use Insite::Services ();

my %Live;
my $Owner = $$;

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        dir     => File::Temp::tempdir('insite-nginx-XXXXXX', TMPDIR => 1,
                                       CLEANUP => 1),
        port    => $o{port} // Insite::Services::free_port(),
        workers => $o{workers} // 2,
        main    => $o{main} // '',
        http    => $o{http} // '',
        server  => $o{server} // '',
        level   => $o{log_level} // 'info',
        daemon  => $o{daemon} // 0,     # 1: as installed nginx runs (USR2 needs it)
    }, $class;
    mkdir "$self->{dir}/logs";
    $self->write_conf;
    $self->start;
    $Live{"$self"} = $self;
    return $self;
}

sub port { $_[0]{port} }
sub dir  { $_[0]{dir} }
sub pid  { $_[0]{pid} }

sub write_conf {
    my ($self, %o) = @_;
    $self->{$_} = $o{$_} for grep { exists $o{$_} } qw(main http server);
    my $d = $self->{dir};
    my $conf = '';
    for my $so (split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '') {
        $conf .= "load_module $so;\n";
    }
    $conf .= ($self->{daemon} ? "daemon on;\n" : "daemon off;\n") . "master_process on;\n"
           . "worker_processes $self->{workers};\n"
           . ($> == 0 && $self->{main} !~ /^\s*user\s/m ? "user root;\n" : '')
           . "error_log $d/logs/error.log $self->{level};\n"
           . "pid $d/logs/nginx.pid;\n$self->{main}\n"
           . "events { worker_connections 4096; accept_mutex off; }\n"
           . "http {\n    access_log $d/logs/access.log;\n"
           . "    client_body_temp_path $d/body;\n    proxy_temp_path $d/proxy;\n"
           . "$self->{http}\n"
           . "    server {\n        listen 127.0.0.1:$self->{port};\n"
           . "$self->{server}\n    }\n}\n";
    Test::Nginx::Util::spew("$d/nginx.conf", $conf);
}

sub start {
    my ($self) = @_;
    my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    return $self->start_daemon($bin) if $self->{daemon};
    my $pid = fork // die "fork: $!\n";
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$self->{dir}/logs/stderr.log";
        open STDERR, '>&', \*STDOUT;
        { exec { $bin } $bin, '-p', "$self->{dir}/", '-c', "$self->{dir}/nginx.conf" }
        POSIX::_exit(127);
    }
    POSIX::setpgid($pid, $pid);
    $self->{pid} = $pid;
    my $deadline = Time::HiRes::time() + 10;
    until (Test::Nginx::Util::listening($self->{port})) {
        if (waitpid($pid, POSIX::WNOHANG()) == $pid
            || Time::HiRes::time() > $deadline)
        {
            delete $self->{pid};
            die "nginx did not listen on $self->{port}:\n" . $self->error_log;
        }
        Time::HiRes::sleep(0.01);
    }
    # the master listens before it forks: wait for the workers
    $deadline = Time::HiRes::time() + 5;
    Time::HiRes::sleep(0.01)
        while $self->workers < $self->{workers} && Time::HiRes::time() < $deadline;
}

# daemon on: the master detaches (its own session and process group); its
# pid comes from the pid file
sub start_daemon {
    my ($self, $bin) = @_;
    my $pidfile = "$self->{dir}/logs/nginx.pid";
    system($bin, '-p', "$self->{dir}/", '-c', "$self->{dir}/nginx.conf") == 0
        or die "nginx did not start:\n" . $self->error_log;
    my $deadline = Time::HiRes::time() + 10;
    until (Test::Nginx::Util::slurp($pidfile) =~ /^(\d+)/
           && Test::Nginx::Util::listening($self->{port}))
    {
        die "nginx did not listen on $self->{port}:\n" . $self->error_log
            if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.01);
    }
    Test::Nginx::Util::slurp($pidfile) =~ /^(\d+)/;
    $self->{pid} = $1;
    $deadline = Time::HiRes::time() + 5;
    Time::HiRes::sleep(0.01)
        while $self->workers < $self->{workers} && Time::HiRes::time() < $deadline;
}

sub reload {
    my ($self) = @_;
    kill 'HUP', $self->{pid};
}

sub get {
    my ($self, $path, %o) = @_;
    return Insite::Services::http_request($self->{port}, 'GET', $path, %o);
}

sub request {
    my ($self, $method, $path, %o) = @_;
    return Insite::Services::http_request($self->{port}, $method, $path, %o);
}

sub error_log {
    my ($self) = @_;
    return Test::Nginx::Util::slurp("$self->{dir}/logs/error.log")
         . Test::Nginx::Util::slurp("$self->{dir}/logs/stderr.log");
}

# worker pids, from the master's children
sub workers {
    my ($self) = @_;
    return Test::Nginx::Util::children_of($self->{pid});
}

sub stop {
    my ($self) = @_;
    my $pid = delete $self->{pid} or return;
    for my $sig (qw(QUIT TERM KILL)) {
        kill $sig, -$pid;
        my $deadline = Time::HiRes::time() + ($sig eq 'KILL' ? 5 : 8);
        while (Time::HiRes::time() < $deadline) {
            waitpid($pid, POSIX::WNOHANG());
            last unless kill(0, -$pid);
            Time::HiRes::sleep(0.02);
        }
        last unless kill(0, -$pid);
    }
    delete $Live{"$self"};
}

# nginx -t on a configuration with the test modules loaded, nothing
# started: (ok, output).  Insite::Nginx->config_test(http => ..., server => ...)
sub config_test {
    my ($class, %o) = @_;
    my $dir = File::Temp::tempdir('insite-nginx-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    mkdir "$dir/logs";
    my $conf = join '', map { "load_module $_;\n" } split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';
    $conf .= "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n"
           . "events { worker_connections 64; }\nhttp {\n    access_log off;\n"
           . "    insite_redis 127.0.0.1:6379;\n" . ($o{http} // '') . "\n    server {\n"
           . "        listen 127.0.0.1:" . Insite::Services::free_port() . ";\n"
           . ($o{server} // '') . "\n    }\n}\n";
    Test::Nginx::Util::spew("$dir/nginx.conf", $conf);
    my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my $out = `'$bin' -t -q -p '$dir/' -c '$dir/nginx.conf' 2>&1`;
    return ($? == 0, $out);
}

# one test: no [alert]/[emerg]/[crit] or sanitizer report in the logs
sub check_log {
    my ($self, $name) = @_;
    my @bad = grep { /\[(alert|emerg|crit)\]|AddressSanitizer|runtime error:/ }
              split /\n/, $self->error_log;
    Test::More::is(scalar(@bad), 0, $name // 'no alerts in the error log')
        or Test::More::diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
}

END {
    if ($$ == $Owner) {
        $_->stop for values %Live;
    }
}

1;
