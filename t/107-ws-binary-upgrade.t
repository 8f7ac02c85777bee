# ngx_http_insite_ws_module through an nginx binary upgrade under load:
# USR2 starts a new master (same binary) beside the old one, WINCH makes the
# old workers leave gracefully: their clients get 1001, reconnect to the new
# workers and resume; every client ends with every seq exactly once.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

my $redis = start_redis();
my $ngx = Insite::Nginx->new(
    daemon => 1,
    http   => "    insite_redis 127.0.0.1:" . $redis->port . ";\n"
            . "    insite_ws_shutdown_spread 500ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

my @ch = ('stock_updates:UPG');
my $N = 200;
my @f = map {
    Insite::WS::Follower->new(port => $port, channels => [@ch], name => "client$_")
} 1 .. 4;
ok(Insite::WS::Follower->run_until(\@f, 5, sub { !grep { !$_->live } @f }),
   '4 clients subscribed');
my $old_master = $ngx->pid;
my %old = map { $_ => 1 } $ngx->workers;

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $bad = 0;
    for my $i (1 .. $N) {
        my $ok = 0;
        for my $try (1 .. 50) {
            my $r = Insite::WS->publish($port, $ch[0], { type => 'tick', data => { i => $i } },
                                        key => "k-$i", timeout => 3);
            if (($r->{status} // 0) =~ /^20[01]$/) { $ok = 1; last }
            sleep 0.05;
        }
        $bad++ unless $ok;
        sleep 0.01;
    }
    POSIX::_exit($bad ? 1 : 0);
}

my $pidfile = $ngx->dir . '/logs/nginx.pid';
my ($upgraded, $new_master, $winched, $publisher_done);
my $done = Insite::WS::Follower->run_until(\@f, 25,
    sub { $publisher_done && !grep { $_->last_seq($ch[0]) < $N } @f },
    sub {
        if (!$upgraded && $f[0]->last_seq($ch[0]) >= 40) {
            kill 'USR2', $old_master;
            $upgraded = time;
        }
        if ($upgraded && !$new_master && -e "$pidfile.oldbin") {
            my $p = Test::Nginx::Util::slurp($pidfile);
            $new_master = $1 if $p =~ /^(\d+)/ && $1 != $old_master;
        }
        if ($new_master && !$winched && time - $upgraded > 0.5) {
            kill 'WINCH', $old_master;         # old workers leave gracefully
            $winched = time;
        }
        if (!$publisher_done && waitpid($pid, POSIX::WNOHANG()) == $pid) {
            $publisher_done = 1;
            is($? >> 8, 0, "the publisher published $N messages");
        }
    });

ok($new_master, "a new master started beside the old one ($new_master)");
ok($winched, 'the old workers were told to leave (WINCH)');
ok($done, 'every client reached the last seq')
    or diag join '; ', map { $_->name . ': ' . $_->last_seq($ch[0]) } @f;

for my $c (@f) {
    my @closes = $c->closes;
    is_deeply($closes[0], [1001, 'server restarting, reconnect'],
              $c->name . ': close 1001 from the old worker');
    my @later = grep { $_ } ($c->pids)[1 .. $c->connects - 1];
    ok(@later && !$old{ $later[-1] }, $c->name . ': now held by a new worker');
    is(Insite::WS->seq_problem($c->seqs($ch[0]), 1, $N), '',
       $c->name . ": every seq 1..$N exactly once, in order");
}

# the old master goes; the new one keeps serving
kill 'QUIT', $old_master;
my $deadline = time + 10;
sleep 0.1 while kill(0, $old_master) && time < $deadline
                && waitpid($old_master, POSIX::WNOHANG()) != $old_master;
ok(!kill(0, $old_master), 'the old master has exited');
my $r = Insite::WS->publish($port, $ch[0], { type => 'tick', data => { i => $N + 1 } },
                            key => 'k-after', timeout => 3);
is($r->{status}, 201, 'the new nginx publishes');

$ngx->stop;
$ngx->check_log;
done_testing;
