# The lag view (workers/lib/kafka_lag.h, hosted by insite-auditd): the lag
# of a consumer group the worker does not run, read with the Admin API
# (ListConsumerGroupOffsets) and the partitions' high watermarks, on its
# /metrics as insite_kafka_consumer_lag{topic,partition,group}.
#
# Against the Kafka mock of scripts/services.sh: 30 messages on partition 0
# of a topic of this run, a group (kcat -G) consumes 10 and commits:
# lag 20; 15 more produced: lag 35, without the group moving; a group that
# is not configured is not exported.  promtool accepts the /metrics.
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Services qw(free_port wait_port http_request run_cmd);

for my $v (qw(INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_AUDITD_BIN} // "$root/build/bin/insite-auditd";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;

my $B = $ENV{INSITE_KAFKA_BOOTSTRAP};
my $tag = "t813_$$";
my ($topic, $group, $other) = ("lag_$tag", "watched_$tag", "unwatched_$tag");
my $tmp = File::Temp::tempdir('insite-813-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.2 }
    return $cond->();
}
sub psql {
    my ($o, $r) = run_cmd(20, 'psql', $ENV{INSITE_PG_DSN}, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1',
                          '-c', $_[0]);
    die "psql: $o" if $r;
}
sub produce {
    my ($n, $from) = @_;
    my ($o, $rc) = run_cmd(60, 'sh', '-c',
        "seq $from " . ($from + $n - 1) . " | kcat -P -b '$B' -t '$topic' -p 0");
    is($rc, 0, "kcat produced $n message(s) to $topic [0]") or diag $o;
}
# a group member that reads n messages and commits them as it leaves
sub consume {
    my ($g, $n) = @_;
    my ($o, $rc) = run_cmd(90, 'kcat', '-b', $B, '-G', $g, '-c', $n, '-q',
                           '-X', 'auto.offset.reset=earliest', $topic);
    my @got = split /\n/, $o;
    is(scalar(@got), $n, "group $g consumed $n") or diag $o;
}

produce(30, 1);
consume($group, 10);
consume($other, 5);

psql("DROP SCHEMA IF EXISTS $tag CASCADE; CREATE SCHEMA $tag");
END { psql("DROP SCHEMA IF EXISTS $tag CASCADE") if $tag && $ENV{INSITE_PG_DSN} }
(my $dsn = $ENV{INSITE_PG_DSN}) .= ($ENV{INSITE_PG_DSN} =~ /\?/ ? '&' : '?')
                                  . "options=-csearch_path%3D$tag";
my $port = free_port();
my $log = "$tmp/auditd.log";
my $pid = Insite::Services::spawn($bin, {
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_AUDITD_JOURNAL_DIR => "$tmp/journal", INSITE_AUDITD_DIGEST_DIR => "$tmp/digests",
    INSITE_AUDITD_HTTP_PORT => $port,
    INSITE_KAFKA_BOOTSTRAP => $B,
    INSITE_KAFKA_LAG_GROUPS => $group, INSITE_KAFKA_LAG_TOPICS => $topic,
    INSITE_KAFKA_LAG_INTERVAL => '1s',
}, $log);
END { if ($pid) { kill 'TERM', $pid; waitpid $pid, 0 } }
ok(wait_port($port, 30), 'insite-auditd listens') or diag `tail -20 $log`;

sub metrics { http_request($port, 'GET', '/metrics')->{body} // '' }
sub lag {
    my ($text, $g) = @_;
    return $text =~ /^insite_kafka_consumer_lag\{topic="\Q$topic\E",partition="0",group="\Q$g\E"\} (\S+)$/m
        ? $1 : undef;
}

my $text = '';
ok(wait_for(60, sub { $text = metrics(); (lag($text, $group) // -1) == 20 }),
   'the watched group: lag 20 (30 produced, 10 committed)')
    or diag $text, `tail -20 $log`;
is(lag($text, $other), undef, 'a group that is not configured is not exported');

produce(15, 31);
ok(wait_for(60, sub { $text = metrics(); (lag($text, $group) // -1) == 35 }),
   'the end moves: lag 35 after 15 more')
    or diag $text;

consume($group, 35);
ok(wait_for(60, sub { $text = metrics(); (lag($text, $group) // -1) == 0 }),
   'the group catches up: lag 0')
    or diag $text;

SKIP: {
    skip 'promtool not installed', 1 unless grep { -x "$_/promtool" } split /:/, $ENV{PATH};
    open my $fh, '>', "$tmp/metrics.txt" or die;
    print $fh $text;
    close $fh;
    my ($o, $rc) = run_cmd(30, 'sh', '-c', "promtool check metrics < '$tmp/metrics.txt'");
    is($rc, 0, 'promtool check metrics accepts it') or diag $o;
}

kill 'TERM', $pid;
waitpid $pid, 0;
is($? >> 8, 0, 'insite-auditd exits 0 on SIGTERM (the lag view thread stops)');
$pid = undef;
done_testing;
