# ngx_http_insite_ws_module: nginx -s reload under load. The old workers tell
# their clients to go (close 1001 "server restarting, reconnect"), spread
# over insite_ws_shutdown_spread; the clients reconnect to the new workers and
# resume with since = the last seq they saw; in the end every client has every
# seq exactly once, and the old workers are gone without an [alert].
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use JSON::PP ();
use POSIX ();
use Insite::Services qw(start_redis http_request);
use Insite::Nginx;
use Insite::WS;

my $JSON = JSON::PP->new->utf8->canonical;
my $redis = start_redis();
my $rport = $redis->port;

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$rport;\n"
            . "    insite_ws_shutdown_spread 800ms;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }",
);
my $port = $ngx->port;
ok(Insite::WS->wait_ready($port), 'Redis connected in both workers');

END {
    diag "error log:\n" . Insite::WS->log_tail($ngx, 60)
        if $ngx && $ngx->pid && !Test::More->builder->is_passing;
}

sub status { $JSON->decode(http_request($port, 'GET', '/status')->{body} // '{}') }

my @ch = ('stock_updates:RLD', 'sentiment_updates:RLD');
my $N = 300;

my @f = map {
    Insite::WS::Follower->new(port => $port, channels => [@ch], name => "client$_")
} 1 .. 8;
ok(Insite::WS::Follower->run_until(\@f, 5, sub { !grep { !$_->live } @f }),
   '8 clients subscribed to 2 channels');
my %old = map { $_ => 1 } $ngx->workers;
is(scalar keys %old, 2, 'two workers before the reload');
my %start_pids = map { ($_->pids)[0] => 1 } @f;
ok(!grep({ !$old{$_} } keys %start_pids), 'the clients are held by those workers');

# the publisher: both channels, with Idempotency-Key retries (a publish may
# reach a worker that is shutting down)
my $pid = fork // die "fork: $!";
if ($pid == 0) {
    my $bad = 0;
    for my $i (1 .. $N) {
        for my $c (@ch) {
            my $ok = 0;
            for my $try (1 .. 50) {
                my $r = Insite::WS->publish($port, $c, { type => 'tick', data => { i => $i } },
                                            key => "$c-$i", timeout => 3);
                if (($r->{status} // 0) =~ /^20[01]$/) {
                    $ok = 1;
                    $bad++ if $r->{json}{seq} != $i;
                    last;
                }
                sleep 0.05;
            }
            $bad++ unless $ok;
        }
        sleep 0.005;
    }
    POSIX::_exit($bad ? 1 : 0);
}

my ($reloaded, $publisher_done);
my $t0 = time;
my $done = Insite::WS::Follower->run_until(\@f, 20,
    sub { $publisher_done && !grep { my $x = $_; grep { $x->last_seq($_) < $N } @ch } @f },
    sub {
        if (!$reloaded && $f[0]->last_seq($ch[0]) >= 60) {
            $ngx->reload;
            $reloaded = time;
        }
        if (!$publisher_done && waitpid($pid, POSIX::WNOHANG()) == $pid) {
            $publisher_done = 1;
            is($? >> 8, 0, "the publisher published $N messages on each channel, seq = i");
        }
    });
ok($reloaded, 'nginx reloaded (HUP) while messages were flowing');
ok($done, 'every client reached the last seq on both channels')
    or diag join '; ', map { my $x = $_; $x->name . ': ' . join(',', map { $x->last_seq($_) } @ch) } @f;

for my $c (@f) {
    my @closes = $c->closes;
    ok(scalar @closes, $c->name . ': closed by the server (' . scalar(@closes) . ' time(s))');
    is_deeply($closes[0], [1001, 'server restarting, reconnect'],
              $c->name . ': close 1001 "server restarting, reconnect"');
    cmp_ok($c->connects, '>=', 2, $c->name . ': reconnected');
    my @later = grep { $_ } ($c->pids)[1 .. $c->connects - 1];
    ok(@later && !$old{ $later[-1] }, $c->name . ': now held by a new worker')
        or diag 'pids: ' . join(',', $c->pids);
    for my $chn (@ch) {
        is(Insite::WS->seq_problem($c->seqs($chn), 1, $N), '',
           $c->name . ": $chn: every seq 1..$N exactly once, in order");
    }
    is(scalar $c->resets, 0, $c->name . ': no reset');
    # "unavailable" is a legitimate answer while a new worker's Redis
    # connection comes up; the client retries. Anything else is not.
    my @errors = grep { !/^unavailable:/ } $c->errors;
    is(scalar @errors, 0, $c->name . ': no error (other than a retried "unavailable")')
        or diag join "\n", @errors;
}

# the 1001s were spread over insite_ws_shutdown_spread, not sent in one burst
my @first_close = sort { $a <=> $b } map { ($_->close_times)[0] // () } @f;
if (@first_close == @f) {
    my $spread = $first_close[-1] - $first_close[0];
    cmp_ok($spread, '>', 0.1, sprintf('the closes were spread out (over %.0f ms)', $spread * 1000));
    # without the spread, old workers keep their clients until the test gives
    # up; 15 s is a bound for a loaded machine, not a timing figure
    cmp_ok($first_close[-1] - $reloaded, '<', 15, 'and all came after the reload, not at shutdown');
}

my %new;
my $deadline = time + 8;
while (time < $deadline) {
    %new = map { $_ => 1 } $ngx->workers;
    last if keys %new == 2 && !grep { $old{$_} } keys %new;
    sleep 0.1;
}
is(scalar keys %new, 2, 'two workers after the reload');
ok(!grep({ $old{$_} } keys %new), 'the old workers have exited');
my $st = status();
is($st->{connections}{now}, scalar @f, 'status: exactly the clients are counted as open connections');

# --- nginx -s quit: the same goodbye, and nginx exits promptly ------------------------------

my %closes_before = map { $_->name => scalar($_->closes) } @f;
my $master = $ngx->pid;
kill 'QUIT', $master;
my $t_quit = time;
Insite::WS::Follower->run_until(\@f, 6, sub { !grep { $_->closes <= $closes_before{$_->name} } @f });
for my $c (@f) {
    my @cl = $c->closes;
    is_deeply($cl[$closes_before{$c->name}], [1001, 'server restarting, reconnect'],
              $c->name . ': quit: close 1001 with the reason');
}
my $exited;
while (time - $t_quit < 8) {
    if (waitpid($master, POSIX::WNOHANG()) == $master || !kill(0, $master)) { $exited = time; last }
    $_->poll for @f;
    sleep 0.05;
}
ok($exited, 'nginx exited after quit');
cmp_ok(($exited // 99) - $t_quit, '<', 4,
       'within the shutdown spread and the close linger (no client keeps it alive)');

$_->ws->close for grep { $_->ws } @f;
$ngx->stop;
$ngx->check_log;
unlike($ngx->error_log, qr/open socket .* left in connection/, 'no socket left open at exit');

done_testing;
