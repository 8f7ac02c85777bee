# The shared Kafka metrics (workers/lib/kafka_metrics.h) on a real worker:
# insite-analytics consumes social_posts from the Kafka mock of
# scripts/services.sh in its own group and topic.
#
#   produce N -> insite_kafka_messages_consumed_total{topic,group} == N, the
#   processing histogram counts N, insite_kafka_consumer_lag returns to 0,
#   the producer side counts the dead letter it sent;
#   stop the worker, produce 2,000 more, start it paused (analytics.paused:
#   joins the group, fetches nothing) -> the group's lag >= 1000;
#   promtool check metrics accepts the worker's /metrics.
#
# Needs INSITE_REDIS_PORT, INSITE_PG_DSN, INSITE_KAFKA_BOOTSTRAP (as
# scripts/test.sh exports them), kcat and the lexicons (scripts/lexicons.sh).
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Services qw(free_port http_request run_cmd);

for my $v (qw(INSITE_REDIS_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
my $root = getcwd();
my $bin = $ENV{INSITE_ANALYTICS_BIN} // "$root/build/bin/insite-analytics";
$bin = "$root/$bin" unless $bin =~ m{^/};
plan skip_all => "$bin not built" unless -x $bin;
plan skip_all => 'kcat not installed' unless grep { -x "$_/kcat" } split /:/, $ENV{PATH};
my %lex = map { /^(\w+)=(.*)$/ ? ($1 => $2) : () } split /\n/, `scripts/lexicons.sh 2>/dev/null`;
plan skip_all => 'lexicons missing (scripts/lexicons.sh)'
    unless $lex{INSITE_ANALYTICS_VADER_LEXICON} && -r $lex{INSITE_ANALYTICS_VADER_LEXICON};

my $tag = "kt810_$$";
my ($topic, $group) = ("posts_$tag", "group_$tag");
my $bs = $ENV{INSITE_KAFKA_BOOTSTRAP};
my $tmp = File::Temp::tempdir("insite-810-XXXXXX", TMPDIR => 1, CLEANUP => 1);
my $json = JSON::PP->new->canonical;

sub psql {
    my ($out, $rc) = run_cmd(10, 'psql', $ENV{INSITE_PG_DSN}, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1',
                             '-c', $_[0]);
    die "psql: $out" if $rc;
    $out;
}
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.2 }
    return $cond->();
}
sub produce {
    my ($lines) = @_;
    my $f = "$tmp/batch.jsonl";
    open my $fh, '>', $f or die "$f: $!";
    print $fh map { "$_\n" } @$lines;
    close $fh;
    my ($out, $rc) = run_cmd(60, 'kcat', '-P', '-b', $bs, '-t', $topic, '-K', '|', '-l', $f);
    is($rc, 0, 'kcat produced ' . @$lines . ' message(s)') or diag $out;
}
my $seq = 0;
sub post {
    my $n = $seq++;
    my $env = { event_type => 'social_post', event_id => sprintf('00000000-0000-4000-8000-%012d', $n),
                source_service => 'collector', timestamp => '2026-11-26T10:30:45.000Z', version => '1.0',
                data => { source => 'reddit', source_id => "t3_${tag}_$n", symbol => 'AAPL',
                          text => "AAPL post $n is great", created_at => '2026-11-26T10:30:45.000Z' } };
    return "k$n|" . $json->encode($env);
}

psql("DROP SCHEMA IF EXISTS $tag CASCADE; CREATE SCHEMA $tag;");
END { psql("DROP SCHEMA IF EXISTS $tag CASCADE;") if $tag && $ENV{INSITE_PG_DSN} }
(my $dsn = $ENV{INSITE_PG_DSN}) .= ($ENV{INSITE_PG_DSN} =~ /\?/ ? '&' : '?') . "options=-csearch_path%3D$tag";

my $port = free_port();
my %env = (
    %lex,
    INSITE_ANALYTICS_HTTP_PORT => $port, INSITE_ANALYTICS_CONSUMER_GROUP => $group,
    INSITE_ANALYTICS_POSTS_TOPIC => $topic, INSITE_ANALYTICS_DLQ_TOPIC => "$topic.dlq",
    INSITE_ANALYTICS_UPDATES_TOPIC => "updates_$tag", INSITE_ANALYTICS_WINDOW_TIME => 'received',
    INSITE_ANALYTICS_SOURCE_SERVICE => "analytics-$tag",
    INSITE_KAFKA_BOOTSTRAP => $bs, INSITE_KAFKA_LINGER => '5ms', INSITE_KAFKA_SPOOL_DIR => "$tmp/spool",
    INSITE_KAFKA_CLIENT_ID => "insite-analytics-$tag", INSITE_KAFKA_STATISTICS_INTERVAL => '300ms', INSITE_ANALYTICS_SESSION_TIMEOUT => '6s',
    INSITE_REDIS_PORT => $ENV{INSITE_REDIS_PORT}, INSITE_REDIS_PREFIX => "$tag:",
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
);
my $log = "$tmp/analytics.log";
my $pid;
END { kill 'KILL', $pid if $pid }
sub start {
    my (%extra) = @_;
    $pid = Insite::Services::spawn($bin, { %env, %extra }, $log);
    ok(wait_for(60, sub { (http_request($port, 'GET', '/healthz')->{status} // 0) == 200 }),
       'insite-analytics answers /healthz') or diag `tail -30 $log`;
}
sub stop {
    kill 'TERM', $pid;
    waitpid($pid, 0);
    is($? >> 8, 0, 'insite-analytics exits 0 on SIGTERM') or diag `tail -30 $log`;
    undef $pid;
}
sub metrics {
    my $r = http_request($port, 'GET', '/metrics');
    return $r->{status} && $r->{status} == 200 ? $r->{body} : '';
}
# sum of the samples of one series name whose labels include all of %want
sub sample_sum {
    my ($text, $name, %want) = @_;
    my ($sum, $n) = (0, 0);
    for my $line (split /\n/, $text) {
        next unless $line =~ /^\Q$name\E\{([^}]*)\} (\S+)$/;
        my ($labels, $v) = ($1, $2);
        my %l = $labels =~ /(\w+)="((?:[^"\\]|\\.)*)"/g;
        next if grep { ($l{$_} // '') ne $want{$_} } keys %want;
        $sum += $v;
        $n++;
    }
    return wantarray ? ($sum, $n) : $sum;
}

# ---- N messages: consumed == processed == N, lag back to 0
my $N = 40;
start();
produce([ (map { post() } 1 .. $N), 'poison|this is not an envelope' ]);
my $text = '';
ok(wait_for(90, sub {
    $text = metrics();
    my ($lag, $series) = sample_sum($text, 'insite_kafka_consumer_lag', topic => $topic, group => $group);
    sample_sum($text, 'insite_kafka_messages_consumed_total', topic => $topic, group => $group) == $N + 1
        && $series > 0 && $lag == 0;
}), 'consumed N+1 and the lag of every owned partition is 0') or diag $text, `tail -20 $log`;
is(sample_sum($text, 'insite_kafka_messages_consumed_total', topic => $topic, group => $group), $N + 1,
   'insite_kafka_messages_consumed_total{topic,group} counts every message');
is(sample_sum($text, 'insite_kafka_processing_duration_seconds_count', topic => $topic,
              event_type => 'social_post'), $N, 'processing histogram: N social_post messages');
is(sample_sum($text, 'insite_kafka_processing_duration_seconds_count', topic => $topic,
              event_type => 'invalid'), 1, 'processing histogram: 1 invalid message');
is(sample_sum($text, 'insite_kafka_processing_duration_seconds_bucket', topic => $topic,
              event_type => 'social_post', le => '+Inf'), $N, '+Inf bucket equals the count');
ok(wait_for(30, sub {
    sample_sum(metrics(), 'insite_kafka_messages_produced_total', topic => "$topic.dlq") == 1 }),
   'the producer counts the dead letter it delivered (insite_kafka_messages_produced_total)')
    or diag metrics();
like(metrics(), qr/^insite_kafka_producer_queue_depth\{client_id="insite-analytics-\Q$tag\E"\} \d+$/m,
     'producer queue depth per client');

my $promtool = grep({ -x "$_/promtool" } split /:/, $ENV{PATH});
SKIP: {
    skip 'promtool not installed', 1 unless $promtool;
    my $f = "$tmp/metrics.txt";
    open my $fh, '>', $f or die;
    print $fh metrics();
    close $fh;
    my ($out, $rc) = run_cmd(30, 'sh', '-c', "promtool check metrics < $f");
    is($rc, 0, 'promtool check metrics accepts /metrics') or diag $out;
}
stop();

# ---- stopped consumer, 2,000 more: the group's lag
produce([ map { post() } 1 .. 2000 ]);
start(INSITE_ANALYTICS_PAUSED => 'true');
my $lag = 0;
ok(wait_for(90, sub {
    $lag = sample_sum(metrics(), 'insite_kafka_consumer_lag', topic => $topic, group => $group);
    $lag >= 1000 }), "lag of the group after 2,000 unconsumed messages >= 1000 ($lag)")
    or diag metrics(), `tail -20 $log`;
is(sample_sum(metrics(), 'insite_kafka_messages_consumed_total', topic => $topic, group => $group), 0,
   'paused: nothing consumed');
stop();

done_testing();
