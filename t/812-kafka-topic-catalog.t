# The Kafka topic catalog (workers/lib/kafka_topics.h) and dead letters,
# seen with kcat against the mock cluster of scripts/services.sh:
# - every topic of the catalog exists with the platform plan's partition
#   count (services.sh starts insite-kafka-mock --catalog);
# - insite-notify, given a message that is not JSON on stock_updates and a
#   JSON message that is no update on sentiment_updates, puts each on
#   <topic>.dlq as a dead_letter envelope (reason, topic, partition,
#   offset, key, payload) and goes on: a valid update after them is
#   evaluated and its offset committed.
use strict;
use warnings;
use lib 't/lib';

use Test::More;
use Insite::Notify;
use Insite::Services qw(run_cmd);

my $why = Insite::Notify::needs();
plan skip_all => $why if $why;
my $B = $ENV{INSITE_KAFKA_BOOTSTRAP};

# ---- the catalog on the cluster: the plan's partitions, a .dlq per
# consumed topic
my %want = (stock_updates => 5, sentiment_updates => 5, alerts => 3, user_events => 5,
            system_events => 1, social_posts => 5, 'stock_updates.dlq' => 1,
            'sentiment_updates.dlq' => 1, 'social_posts.dlq' => 1);
my ($meta, $rc) = run_cmd(30, 'kcat', '-b', $B, '-L');
is($rc, 0, 'kcat -L') or diag $meta;
my %have = $meta =~ /topic "([^"]+)" with (\d+) partitions/g;
is($have{$_}, $want{$_}, "topic $_: $want{$_} partition(s)") for sort keys %want;

# ---- dead letters from insite-notify
my $n = Insite::Notify->new(tag => 't812');
my $u = "dora-$$";
my $S = "Q$$";                      # a symbol of this run only
my ($st, $j) = $n->api(POST => '/api/v1/alerts/rules', $u,
                       { type => 'price_above', symbol => $S, price => 5 });
is($st, 201, 'a price_above rule') or diag explain $j;
my $k = "POISON$$";
my $raw = "not json at all $$";
my ($o, $prc) = run_cmd(30, 'sh', '-c',
    "printf '%s|%s\\n' '$k' '$raw' | kcat -P -b '$B' -t stock_updates -K '|'");
is($prc, 0, 'poison (not JSON) produced to stock_updates') or diag $o;
$n->produce('sentiment_updates', [ "${k}S", { hello => "world $$" } ]);
# valid updates after them: the crossing fires the rule
$n->stock([ $S, 4, 1796176800 ], [ $S, 10, 1796176810 ]);

sub dead_letters {
    my ($topic) = @_;
    my ($out) = run_cmd(30, 'kcat', '-C', '-b', $B, '-t', $topic, '-o', 'beginning', '-e',
                        '-q', '-f', "%k\t%s\n");
    my %by_key;
    for (split /\n/, $out) {
        my ($key, $v) = split /\t/, $_, 2;
        my $j = eval { Insite::Notify::json()->decode($v) } or next;
        $by_key{$key} = $j;
    }
    return \%by_key;
}

my $dl;
Insite::Notify::wait_for(60, sub { $dl = dead_letters('stock_updates.dlq')->{$k} });
ok($dl, "the message that is not JSON is on stock_updates.dlq, key $k")
    or diag $n->log_text;
SKIP: {
    skip 'no dead letter', 6 unless $dl;
    is($dl->{event_type}, 'dead_letter', 'an envelope of type dead_letter');
    is($dl->{source_service}, 'notify', 'from insite-notify');
    is($dl->{data}{reason}, 'not JSON', 'reason');
    is($dl->{data}{topic}, 'stock_updates', 'original topic');
    is($dl->{data}{payload}, $raw, 'the original bytes');
    ok(defined $dl->{data}{offset} && defined $dl->{data}{partition}, 'partition and offset');
}

my $dls;
Insite::Notify::wait_for(60, sub { $dls = dead_letters('sentiment_updates.dlq')->{"${k}S"} });
ok($dls, 'the JSON message that is no update is on sentiment_updates.dlq');
is($dls && $dls->{data}{reason}, 'not a stock or sentiment update', 'its reason');

# the consumer went on: the updates after the poison were evaluated
ok(Insite::Notify::wait_for(60, sub {
    $n->sql("SELECT count(*) FROM notifications WHERE user_id = '$u'") == 1 }),
   'the rule fired on the updates produced after the poison messages')
    or diag $n->log_text;
like($n->log_text, qr/stock_updates\[\d+\]\@\d+ to stock_updates\.dlq: not JSON/,
     'the dead letter is logged once with its cause');

$n->stop;
done_testing;
