# ngx_http_insite_ws_module: exactly one message lost on the pub/sub path.
#
# A message is put into the channel's state and history by lua/publish.lua
# with its PUBLISH left out (so Redis has it, pub/sub never carried it):
#  - the next live message reveals the gap: every worker holding the channel
#    repairs it once (insite_ws_gap_repairs_total rises by the number of
#    those workers, i.e. by exactly one per worker) and every client sees
#    every seq once, in order;
#  - a quiet channel (the lost message is the last one) is repaired by the
#    periodic position check, again once per worker;
# and a client that is far behind the channel (a resume from 0 with a small
# send buffer, so the catch-up stalls and resumes) while messages keep
# arriving live joins the live stream without a gap or a duplicate.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes qw(time sleep);
use POSIX ();
use Insite::Services qw(start_redis);
use Insite::Nginx;
use Insite::WS;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $rport = $redis->port;

my $publish_lua = Insite::WS->publish_lua;
# the same script without its PUBLISH: seq, history, nothing on pub/sub
(my $silent_lua = $publish_lua) =~ s/^redis\.call\(.*'PUBLISH'.*$//m;
isnt($silent_lua, $publish_lua, 'lua/publish.lua without its PUBLISH');

sub publish_silently {
    my ($ch, $i) = @_;
    my $out = $redis->cli('EVAL', $silent_lua,
                          Insite::WS->publish_script_args($ch, data => qq({"i":$i})));
    my ($seq) = ($out // '') =~ /^(\d+)/;
    return $seq;
}

sub nginx {
    my ($interval, %o) = @_;
    return Insite::Nginx->new(
        http   => "    insite_redis 127.0.0.1:$rport;\n"
                . "    insite_ws_check_interval $interval;\n"
                . ($o{http} // ''),
        server => "        location /ws { insite_ws; }\n"
                . "        location /pub { insite_ws_publish; }\n"
                . "        location /status { insite_ws_status; }\n"
                . "        location = /metrics { insite_metrics; }",
    );
}

sub repairs {
    my ($n) = @_;
    my ($v) = ($n->get('/metrics')->{body} // '') =~ /^insite_ws_gap_repairs_total (\d+)$/m;
    return $v // -1;
}

sub pub {
    my ($n, $ch, $i) = @_;
    my $r = Insite::WS->publish($n->port, $ch, { type => 'tick', data => { i => $i } });
    die "publish $ch $i: " . ($r->{status} // $r->{error}) . "\n"
        unless ($r->{status} // 0) == 201;
    return $r->{json}{seq};
}

# subscribed clients spread over both workers (accept_mutex off: the
# kernel picks; connect until each worker holds some)
sub clients {
    my ($n, $ch) = @_;
    my (@f, %pids);
    for my $k (1 .. 30) {
        my $f = Insite::WS::Follower->new(port => $n->port, channels => [$ch], name => "c$k");
        push @f, $f;
        $pids{ ($f->pids)[0] // 0 }++;
        last if @f >= 4 && keys %pids >= 2;
    }
    Insite::WS::Follower->run_until(\@f, 5, sub { !grep { !$_->live } @f });
    return (\@f, scalar keys %pids);
}

sub all_got {
    my ($f, $ch, $last) = @_;
    return Insite::WS::Follower->run_until($f, 10, sub { !grep { $_->last_seq($ch) < $last } @$f });
}

sub check_seqs {
    my ($f, $ch, $last, $what) = @_;
    my @bad = grep { Insite::WS->seq_problem($_->seqs($ch), 1, $last) } @$f;
    is(scalar @bad, 0, "$what: every client saw 1..$last once, in order")
        or diag(join "\n", map { $_->name . ': ' . Insite::WS->seq_problem($_->seqs($ch), 1, $last) } @bad);
    is(scalar(map { $_->resets } @$f), 0, "$what: no reset (nothing was lost for good)");
}

# --- a gap revealed by the next live message -------------------------------------
{
    # a long check interval: the live message, not the periodic check, finds it
    my $n = nginx('60s');
    ok(Insite::WS->wait_ready($n->port), 'Redis connected in both workers');
    my $ch = 'stock_updates:GAP1';
    my ($f, $workers) = clients($n, $ch);
    cmp_ok(scalar @$f, '>=', 4, scalar(@$f) . " clients on $workers worker(s)");
    pub($n, $ch, $_) for 1 .. 3;
    ok(all_got($f, $ch, 3), 'before: 1..3 delivered');
    my $before = repairs($n);
    is(publish_silently($ch, 4), 4, 'seq 4 is in history and state, never published');
    is(pub($n, $ch, 5), 5, 'seq 5 published');
    ok(all_got($f, $ch, 5), 'every client reaches 5');
    pub($n, $ch, 6);
    ok(all_got($f, $ch, 6), 'and 6, live');
    Insite::WS::Follower->run_until($f, 0.5, sub { 0 });
    check_seqs($f, $ch, 6, 'one lost message');
    is(repairs($n) - $before, $workers,
       "gap repairs rose by one per worker holding the channel ($workers)");
    is(join(',', map { $_->msgs($ch)->{4}{data}{i} // '-' } @$f), join(',', ('4') x @$f),
       'seq 4 is the message put into history');
    $n->check_log;
    $n->stop;
}

# --- a quiet channel: the lost message is the last one -----------------------------
{
    my $n = nginx('300ms');
    ok(Insite::WS->wait_ready($n->port), 'Redis connected in both workers');
    my $ch = 'stock_updates:GAP2';
    my ($f, $workers) = clients($n, $ch);
    pub($n, $ch, $_) for 1 .. 2;
    ok(all_got($f, $ch, 2), 'before: 1..2 delivered');
    my $before = repairs($n);
    is(publish_silently($ch, 3), 3, 'seq 3 is in history and state, never published');
    ok(all_got($f, $ch, 3), 'the periodic check brings 3 to every client');
    Insite::WS::Follower->run_until($f, 1, sub { 0 });
    check_seqs($f, $ch, 3, 'a quiet channel');
    is(repairs($n) - $before, $workers, "gap repairs rose by one per worker ($workers)");
    $n->check_log;
    $n->stop;
}

# --- a client far behind the channel catches up while messages arrive live ---------
{
    my $n = nginx('1s', http => "    insite_ws_send_buffer 32k;\n");
    ok(Insite::WS->wait_ready($n->port), 'Redis connected in both workers');
    my $ch = 'sentiment_updates:BEHIND';
    my $fill = 'b' x 1000;
    for my $i (1 .. 150) {
        my $r = Insite::WS->publish($n->port, $ch, { type => 'tick', data => { i => $i, t => $fill } });
        die "publish $i\n" unless ($r->{status} // 0) == 201;
    }
    my $live = Insite::WS::Follower->new(port => $n->port, channels => [$ch], name => 'live');
    my $ws = Insite::WS->connect($n->port);
    my $s = $ws->subscribe([$ch], since => { $ch => 0 });
    is($s && $s->{type}, 'subscribed', 'the late client resumes from 0 (150 behind)');
    my $N = 250;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        for my $i (151 .. $N) {
            Insite::WS->publish($n->port, $ch, { type => 'tick', data => { i => $i, t => $fill } });
            sleep 0.005;
        }
        POSIX::_exit(0);
    }
    # the late client reads slowly at first: its catch-up stalls on the
    # send buffer while the channel moves on
    my (@seqs, $closed);
    my $deadline = time + 30;
    while (time < $deadline && (@seqs ? $seqs[-1] : 0) < $N) {
        $live->poll;
        my $f = $ws->recv_frame(timeout => 0.2) // next;
        if ($f->{opcode} == 8) { $closed = unpack('n', $f->{payload}); last }
        next unless $f->{opcode} == 1;
        my $m = Insite::WS::json()->decode($f->{payload});
        if (($m->{type} // '') eq 'reset') { push @seqs, -1; next }
        push @seqs, $m->{seq} if defined $m->{seq};
        sleep 0.01 if @seqs < 60;
    }
    waitpid($pid, 0);
    Insite::WS::Follower->run_until([$live], 5, sub { $live->last_seq($ch) >= $N });
    ok(!defined $closed, 'the late client is not closed as a slow consumer')
        or diag("closed with $closed");
    is(Insite::WS->seq_problem(\@seqs, 1, $N), '', "the late client saw 1..$N once, in order");
    my $first_live = ($live->seqs($ch))->[0] // 0;
    is(Insite::WS->seq_problem($live->seqs($ch), $first_live, $N), '',
       "the live client saw $first_live..$N once, in order");
    $ws->close;
    $n->check_log;
    $n->stop;
}

done_testing();
