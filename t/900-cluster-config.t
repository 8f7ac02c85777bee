# insite_redis_cluster: what `nginx -t` refuses (with insite_redis, bad node
# addresses, bad values) and accepts; the workers come up on a real cluster
# (3 masters + 3 replicas): /healthz and /status report Redis connected and
# a command reaches every shard (publish to channels whose slots are on each
# master, the keys land on the owning master).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp ();
use Insite::Services ();
use Insite::RedisCluster;
use Insite::Nginx;
use Insite::WS;

my $bin = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

sub nginx_t {
    my ($http) = @_;
    my $dir = File::Temp::tempdir('insite-nginx-t-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    mkdir "$dir/logs";
    my $conf = '';
    $conf .= "load_module $_;\n" for split ' ', $ENV{TEST_NGINX_LOAD_MODULES} // '';
    $conf .= "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n"
           . "events { worker_connections 64; }\n"
           . "http {\n    access_log off;\n$http\n"
           . "    server {\n        listen 127.0.0.1:" . Insite::Services::free_port() . ";\n"
           . "        location /ws { insite_ws; }\n    }\n}\n";
    open my $fh, '>', "$dir/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;
    my $out = `'$bin' -t -q -p '$dir/' -c '$dir/nginx.conf' 2>&1`;
    return ($? == 0, $out);
}

sub refused {
    my ($name, $http, $want) = @_;
    my ($ok, $out) = nginx_t($http);
    ok(!$ok, "$name: nginx -t fails");
    like($out, $want, "$name: the error says why") or diag $out;
}

# --- configuration -------------------------------------------------------------------------

refused('insite_redis then insite_redis_cluster',
        "    insite_redis 127.0.0.1:6379;\n    insite_redis_cluster 127.0.0.1:7000;",
        qr/"insite_redis_cluster": insite_redis and insite_redis_cluster are mutually exclusive/);
refused('insite_redis_cluster then insite_redis',
        "    insite_redis_cluster 127.0.0.1:7000;\n    insite_redis 127.0.0.1:6379;",
        qr/"insite_redis": insite_redis and insite_redis_cluster are mutually exclusive/);
refused('insite_redis_cluster twice',
        "    insite_redis_cluster 127.0.0.1:7000;\n    insite_redis_cluster 127.0.0.1:7001;",
        qr/"insite_redis_cluster" directive is duplicate/);
refused('no node', "    insite_redis_cluster password=x;", qr/insite_redis_cluster: no node address given/);
refused('unix socket', "    insite_redis_cluster unix:/tmp/r.sock;",
        qr/insite_redis_cluster: invalid parameter "unix:\/tmp\/r.sock" \(nodes are host:port\)/);
refused('no port', "    insite_redis_cluster 127.0.0.1;", qr/insite_redis_cluster: no port in "127.0.0.1"/);
refused('db=', "    insite_redis_cluster 127.0.0.1:7000 db=1;",
        qr/insite_redis_cluster: invalid parameter "db=1"/);
refused('read_from', "    insite_redis_cluster 127.0.0.1:7000 read_from=any;",
        qr/insite_redis_cluster: "read_from=any": read_from is master or replica/);
refused('command_timeout=0', "    insite_redis_cluster 127.0.0.1:7000 command_timeout=0;",
        qr/command_timeout=0/);
{
    my ($ok, $out) = nginx_t("    insite_redis_cluster 127.0.0.1:7000 127.0.0.1:7001 "
                             . "password=secret connect_timeout=2s command_timeout=300ms "
                             . "read_from=replica;");
    ok($ok, 'every parameter together: nginx -t passes') or diag $out;
}

# --- on a real cluster ---------------------------------------------------------------------

my $cl = Insite::RedisCluster->new(masters => 3, replicas => 1);
my @masters = $cl->masters;
is(scalar @masters, 3, 'cluster: 3 masters');

my $n = Insite::Nginx->new(
    http   => "    insite_redis_cluster " . $cl->seeds . " command_timeout=1s;\n"
            # long: what arrives within the test came through sharded pub/sub,
            # not from the periodic gap repair
            . "    insite_ws_check_interval 60s;",
    server => "        location /ws { insite_ws; }\n"
            . "        location /pub { insite_ws_publish; }\n"
            . "        location /status { insite_ws_status; }\n"
            . "        location /healthz { insite_healthz; }\n"
            . "        location = /metrics { insite_metrics; }");

sub repairs {
    my ($v) = ($n->get('/metrics')->{body} // '') =~ /^insite_ws_gap_repairs_total (\d+)$/m;
    return $v // 0;
}

END {
    diag "error log:\n" . Insite::WS->log_tail($n, 40)
        if $n && $n->pid && !Test::More->builder->is_passing;
}

ok(Insite::WS->wait_ready($n->port), 'both workers: commands and pub/sub connected');
my $h = $n->get('/healthz');
is($h->{status}, 200, '/healthz 200 on the cluster') or diag $h->{body};
like($h->{body}, qr/"redis":\{"configured":true,/, '/healthz: Redis configured');

# one channel whose slot is on each master
my %chan;
for my $i (1 .. 500) {
    my $c = "cl.$i";
    my $m = $cl->master_of_slot($cl->slot_of("insite:{$c}:seq")) or next;
    $chan{ $m->port } //= $c;
    last if keys %chan == 3;
}
is(scalar keys %chan, 3, 'a channel on each master');

for my $port (sort keys %chan) {
    my $c = $chan{$port};
    my @seq;
    for my $i (1 .. 3) {
        my $r = Insite::WS->publish($n->port, $c, { type => 'tick', data => { i => $i } });
        push @seq, $r->{status} == 201 ? $r->{json}{seq} : "status $r->{status} $r->{body}";
    }
    is_deeply(\@seq, [1, 2, 3], "channel $c (master :$port): published seqs 1..3");
    my $node = $cl->node_by_port($port);
    is($node->cli('HGET', "insite:{$c}:seq", 'seq'), 3,
       "channel $c: its state hash is on master :$port");
    is($node->cli('ZCARD', "insite:{$c}:hist"), 3, "channel $c: its history too");
}

# a subscriber of each channel gets the next message (SSUBSCRIBE on each shard)
{
    my @f = map { Insite::WS::Follower->new(port => $n->port, channels => [$_], name => $_) }
            values %chan;
    ok(Insite::WS::Follower->run_until(\@f, 10, sub { !grep { !$_->live } @f }),
       'a subscriber on each shard is live');
    Insite::WS->publish($n->port, $_, { type => 'tick', data => { i => 4 } }) for values %chan;
    ok(Insite::WS::Follower->run_until(\@f, 10, sub { !grep { $_->last_seq($_->name) < 4 } @f }),
       'each got seq 4 through sharded pub/sub')
        or diag join ', ', map { $_->name . '=' . $_->last_seq($_->name) } @f;
    is(repairs(), 0, 'live through pub/sub: no gap was repaired from history');
    $_->ws->close for grep { $_->ws } @f;
}

# one subscribe naming channels on every shard (positions read per slot)
{
    my @ch = sort values %chan;
    my $f = Insite::WS::Follower->new(port => $n->port, channels => \@ch, name => 'all');
    ok(Insite::WS::Follower->run_until([$f], 10, sub { $f->live }),
       'one subscribe of channels on 3 shards is live') or diag join '; ', $f->errors;
    Insite::WS->publish($n->port, $_, { type => 'tick', data => { i => 5 } }) for @ch;
    ok(Insite::WS::Follower->run_until([$f], 10, sub { !grep { $f->last_seq($_) < 5 } @ch }),
       'it got seq 5 of each') or diag join ', ', map { "$_=" . $f->last_seq($_) } @ch;
    is_deeply([map { $f->seqs($_) } @ch], [map { [5] } @ch], 'exactly seq 5 of each, once');
    $f->ws->close if $f->ws;
}

$n->stop;
$n->check_log;
done_testing;
