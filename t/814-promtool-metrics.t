# `promtool check metrics` (Debian's prometheus) on every /metrics the
# project serves: nginx's insite_metrics location (all four modules
# loaded, after a request through each counted path) and the /metrics of
# insite-collector, -auditd, -stocks, -gdpr, -notify and -analytics, each
# started against the services of scripts/test.sh with its own schema,
# Redis prefix and Kafka client, and asked once through its API so its
# request series exist.  promtool fails on a malformed exposition and on
# its lint rules (a counter without _total, a missing HELP, ...).
use strict;
use warnings;
use lib 't/lib';

use Cwd qw(getcwd);
use File::Temp ();
use JSON::PP ();
use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(free_port wait_port http_request run_cmd);

for my $v (qw(INSITE_REDIS_PORT INSITE_PG_DSN INSITE_KAFKA_BOOTSTRAP)) {
    plan skip_all => "$v not set (run under scripts/test.sh)" unless $ENV{$v};
}
plan skip_all => 'promtool not installed' unless grep { -x "$_/promtool" } split /:/, $ENV{PATH};
plan skip_all => 'TEST_NGINX_LOAD_MODULES not set' unless defined $ENV{TEST_NGINX_LOAD_MODULES};

my $root = getcwd();
my $tag = "t814_$$";
my $tmp = File::Temp::tempdir('insite-814-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my %lex = map { /^(\w+)=(.*)$/ ? ($1 => $2) : () } split /\n/, `scripts/lexicons.sh 2>/dev/null`;

sub spew { open my $fh, '>', $_[0] or die "$_[0]: $!"; print $fh $_[1]; close $fh }
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

# the exposition, checked by promtool, plus the families the code promises
sub check_metrics {
    my ($what, $text, @families) = @_;
    my $f = "$tmp/$what.prom";
    spew($f, $text);
    my ($o, $rc) = run_cmd(30, 'sh', '-c', "promtool check metrics < '$f'");
    is($rc, 0, "$what: promtool check metrics") or diag $o;
    like($text, qr/^# TYPE \Q$_\E /m, "$what: exports $_") for @families;
}

# ---- nginx: the four modules, insite_metrics after some traffic
my $nginx = Insite::Nginx->new(http => <<"HTTP", server => <<'SERVER');
    insite_redis 127.0.0.1:$ENV{INSITE_REDIS_PORT};
    insite_gdpr_journal $tmp/journal;
HTTP
        location = /metrics { insite_metrics; }
        location = /healthz { insite_healthz; }
        location /ws { insite_ws; }
SERVER
http_request($nginx->port, 'GET', '/healthz');
http_request($nginx->port, 'GET', '/ws/x');        # not an upgrade: counted as a bad handshake
my $nm = http_request($nginx->port, 'GET', '/metrics');
is($nm->{status}, 200, 'nginx: /metrics 200');
check_metrics('nginx', $nm->{body} // '', qw(insite_redis_connected insite_ws_connections));

# ---- the workers
psql("DROP SCHEMA IF EXISTS $tag CASCADE; CREATE SCHEMA $tag");
END { psql("DROP SCHEMA IF EXISTS $tag CASCADE") if $tag && $ENV{INSITE_PG_DSN} }
(my $dsn = $ENV{INSITE_PG_DSN}) .= ($ENV{INSITE_PG_DSN} =~ /\?/ ? '&' : '?')
                                  . "options=-csearch_path%3D$tag";
spew("$tmp/psn.key", "0123456789abcdef0123456789abcdef");
run_cmd(10, 'openssl', 'genpkey', '-algorithm', 'ed25519', '-out', "$tmp/sign.pem");

my %common = (
    INSITE_PG_DSN => $dsn, INSITE_PG_MIGRATIONS_DIR => "$root/workers/migrations",
    INSITE_REDIS_PORT => $ENV{INSITE_REDIS_PORT}, INSITE_REDIS_PREFIX => "$tag:",
    INSITE_KAFKA_BOOTSTRAP => $ENV{INSITE_KAFKA_BOOTSTRAP}, INSITE_KAFKA_LINGER => '5ms',
    INSITE_KAFKA_SPOOL_DIR => "$tmp/spool", INSITE_KAFKA_CLIENT_ID => "insite-$tag",
);
# worker => [extra env, a request that is not /metrics, families it promises]
my %workers = (
    collector => [ { INSITE_PROVIDER_FEED => 'simulated', INSITE_COLLECTOR_SYMBOLS => 'AAPL',
                     INSITE_COLLECTOR_INTERVAL => '300ms', INSITE_SOCIAL_RSS_ENABLED => 'false',
                     INSITE_COLLECTOR_CONSUMER_GROUP => "collector-$tag" },
                   '/healthz', qw(insite_kafka_messages_produced_total) ],
    auditd    => [ { INSITE_AUDITD_JOURNAL_DIR => "$tmp/journal",
                     INSITE_AUDITD_DIGEST_DIR => "$tmp/digests" },
                   '/healthz', qw() ],
    stocks    => [ {}, '/healthz', qw() ],
    gdpr      => [ { INSITE_GDPR_DATA_MAP => "$root/workers/gdpr/datamap.json",
                     INSITE_GDPR_PSEUDONYM_KEY => "$tmp/psn.key",
                     INSITE_GDPR_SIGNING_KEY => "$tmp/sign.pem" },
                   '/healthz', qw(insite_gdpr_erasure_oldest_open_seconds) ],
    notify    => [ { INSITE_NOTIFY_TEMPLATES_DIR => "$root/workers/notify/templates",
                     INSITE_NOTIFY_CONSUMER_GROUP => "notify-$tag" },
                   '/healthz', qw(insite_kafka_messages_consumed_total insite_kafka_consumer_lag) ],
    analytics => [ { %lex, INSITE_ANALYTICS_CONSUMER_GROUP => "analytics-$tag",
                     INSITE_ANALYTICS_POSTS_TOPIC => "posts_$tag",
                     INSITE_ANALYTICS_UPDATES_TOPIC => "updates_$tag" },
                   '/healthz', qw(insite_kafka_messages_consumed_total) ],
);

for my $w (sort keys %workers) {
    my ($extra, $path, @families) = @{ $workers{$w} };
    my $bin = "$root/build/bin/insite-$w";
    SKIP: {
        skip "$bin not built", 2 unless -x $bin;
        my $port = free_port();
        my $log = "$tmp/$w.log";
        my $pid = Insite::Services::spawn($bin, { %common, %$extra,
                                                  'INSITE_' . uc($w) . '_HTTP_PORT' => $port }, $log);
        my $up = wait_for(60, sub { (http_request($port, 'GET', '/metrics')->{status} // 0) == 200 });
        ok($up, "insite-$w serves /metrics") or diag `tail -20 $log`;
        if ($up) {
            http_request($port, 'GET', $path);
            check_metrics("insite-$w", http_request($port, 'GET', '/metrics')->{body} // '',
                          @families);
        }
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
}

done_testing;
