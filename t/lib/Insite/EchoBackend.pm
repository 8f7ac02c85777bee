package Insite::EchoBackend;

# An upstream that answers every request with the request's head (request
# line and header lines) exactly as it came over the wire: what nginx sent,
# duplicates and order included, where nginx's $http_* variables would
# merge or hide them.
#
#   my $port = Insite::EchoBackend::start();   # stopped at exit

use strict;
use warnings;

use IO::Socket::INET ();
use POSIX ();

my @Pids;
my $Owner = $$;

sub start {
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                       Listen => 128, Proto => 'tcp',
                                       ReuseAddr => 1)
        or die "listen: $!";
    my $port = $listen->sockport;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{ALRM} = sub { POSIX::_exit(0) };
        alarm 300;
        while (my $c = $listen->accept) {
            my $head = '';
            while ($head !~ /\r\n\r\n/) {
                my $n = sysread($c, $head, 4096, length $head);
                last unless $n;
            }
            $head =~ s/\r\n\r\n.*//s;
            $head =~ s/\r\n/\n/g;
            my $body = "$head\n";
            print $c "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                   . "Content-Length: " . length($body)
                   . "\r\nConnection: close\r\n\r\n$body";
            close $c;
        }
        POSIX::_exit(0);
    }
    close $listen;
    push @Pids, $pid;
    return $port;
}

END {
    local $?;    # reaping the backend must not become the test's exit status
    if ($$ == $Owner) {
        for my $pid (@Pids) {
            kill 'TERM', $pid;
            waitpid $pid, 0;
        }
    }
}

1;
