# Insite::Services: the Redis controls really change what redis-cli sees,
# and the HTTP/port helpers work.  Plain Test::More; real redis-server.

use strict;
use warnings;
use lib 't/lib';

use IO::Socket::INET;
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Services qw(free_port wait_port start_redis http_request);

# free_port / wait_port
my $port = free_port();
like($port, qr/^\d+$/, 'free_port returns a port number');
ok(!wait_port($port, 0.2), 'wait_port: nothing listens on a free port');
{
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port,
                                  Listen => 5, ReuseAddr => 1)
        or die "listen: $!";
    ok(wait_port($port, 2), 'wait_port sees a listener');
    close $l;
}

# start + cli
my $r = start_redis();
ok($r->pid, 'redis started, pid ' . $r->pid);
like($r->port, qr/^\d+$/, 'redis port ' . $r->port);
ok(kill(0, $r->pid), 'redis process alive');
is($r->cli('PING'), 'PONG', 'redis-cli PING');
is($r->cli('SET', 'insite:k', 'v1'), 'OK', 'SET');
is($r->cli('GET', 'insite:k'), 'v1', 'GET sees the value');
is($r->cli('CONFIG', 'GET', 'bind'), "bind\n127.0.0.1", 'bound to 127.0.0.1 only');
is($r->cli('CONFIG', 'GET', 'save'), "save\n", 'no RDB snapshots');
is($r->cli('CONFIG', 'GET', 'appendonly'), "appendonly\nno", 'no AOF');
is($r->cli('CONFIG', 'GET', 'dir'), "dir\n" . $r->dir, 'runs in its own dir');

# freeze / thaw: a Redis that stops answering, then answers again
$r->freeze;
$r->cli_timeout(0.5);
my $t0 = time;
is($r->cli('PING'), undef, 'frozen redis does not answer');
ok(time - $t0 < 3, 'cli gave up after its timeout');
ok(!$r->ping(0.3), 'raw PING times out too');
$r->thaw;
$r->cli_timeout(3);
is($r->cli('PING'), 'PONG', 'thawed redis answers again');
is($r->cli('GET', 'insite:k'), 'v1', 'data survived the freeze');

# kill9: gone; restart: same port, empty (no persistence)
my ($old_pid, $old_port) = ($r->pid, $r->port);
$r->kill9;
ok(!$r->pid, 'no pid after kill9');
ok(!kill(0, $old_pid), 'old redis process is gone');
ok(!wait_port($old_port, 0.2), 'port closed after kill9');
isnt($r->cli('PING'), 'PONG', 'redis-cli cannot reach a killed redis');

$r->restart;
ok($r->pid && $r->pid != $old_pid, 'restart gives a new process');
is($r->port, $old_port, 'restart keeps the port');
is($r->cli('PING'), 'PONG', 'restarted redis answers');
is($r->cli('GET', 'insite:k'), '', 'restarted redis is empty (no persistence)');

# stop: TERM + wait, twice is harmless
my $pid2 = $r->pid;
$r->stop;
ok(!kill(0, $pid2), 'stop: process exited');
$r->stop;
pass('second stop is a no-op');
$r->restart;
is($r->cli('PING'), 'PONG', 'restart after stop');

# stop of a frozen redis still works (CONT then TERM)
$r->freeze;
my $pid3 = $r->pid;
$r->stop;
ok(!kill(0, $pid3), 'stopping a frozen redis works');

# a second instance in parallel gets its own port and dir
my $r2 = start_redis();
my $r3 = start_redis();
isnt($r2->port, $r3->port, 'two instances, two ports');
$r2->cli('SET', 'only', 'r2');
is($r3->cli('GET', 'only'), '', 'instances are independent');

# http_request against a throwaway HTTP responder
{
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Listen => 5, ReuseAddr => 1)
        or die "listen: $!";
    my $hport = $l->sockport;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        for my $delay (0, 2) {
            my $c = $l->accept or POSIX::_exit(1);
            my $req = '';
            sysread($c, $req, 4096, length $req) until $req =~ /\r\n\r\n/;
            sleep $delay;
            print {$c} "HTTP/1.1 201 Created\r\nX-Got: "
                . ($req =~ m{^(\S+ \S+)} ? $1 : '?')
                . "\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
            close $c;
        }
        require POSIX;
        POSIX::_exit(0);
    }
    close $l;
    my $res = http_request($hport, 'POST', '/x', body => 'payload', timeout => 2);
    is($res->{status}, 201, 'http_request status');
    is($res->{headers}{'x-got'}, 'POST /x', 'http_request header');
    is($res->{body}, 'abcde', 'http_request chunked body');
    ok(defined $res->{elapsed}, 'http_request elapsed');

    $res = http_request($hport, 'GET', '/slow', timeout => 0.5);
    ok($res->{error} && $res->{error} =~ /timeout/, 'http_request honours its timeout')
        or diag explain $res;
    ok($res->{elapsed} < 1.5, 'returned after ~timeout');
    waitpid($pid, 0);
}

done_testing();
