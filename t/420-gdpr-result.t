# ngx_http_insite_gdpr_module: "result" at the status boundaries.  An
# audited response is a success (result true) below 400 and a failure from
# 400 on: 200, 399 -> true; 400, 401, 499, 500, 599 -> false.  Each record
# carries the status the client got.  With insite_gdpr_fsync always each
# record is synced.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp ();
use JSON::PP ();
use Time::HiRes qw(time sleep);
use Insite::Nginx;

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $tmp = File::Temp::tempdir('insite-gdpr-result-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $tmp;
my $j = "$tmp/journal";
my @codes = (200, 299, 399, 400, 401, 499, 500, 599);
my $locs = join '', map { "        location = /api/s$_ { insite_gdpr_audit on; return $_ \"s$_\\n\"; }\n" } @codes;
my $n = Insite::Nginx->new(http => "    insite_gdpr_journal $j;\n    insite_gdpr_fsync always;\n",
                           server => "        insite_gdpr_audit_user \$http_x_user;\n$locs"
                                   . "        location = /metrics { insite_metrics; }\n");

my %got;
for my $c (@codes) {
    my $r = $n->get("/api/s$c", headers => { 'X-User' => 'alice' });
    $got{$c} = $r->{status};
}
is_deeply(\%got, { map { $_ => $_ } @codes }, 'each location answers with its status');

my $json = JSON::PP->new->utf8;
my @recs;
my $deadline = time + 10;
while (time < $deadline) {
    @recs = ();
    for my $f (glob "$j/audit-*.jsonl") {
        open my $fh, '<', $f or next;
        push @recs, map { $json->decode($_) } grep { /\S/ } <$fh>;
    }
    last if @recs >= @codes;
    sleep 0.05;
}
is(scalar @recs, scalar @codes, 'one record per request');
my %by = map { ($_->{path} =~ m{/s(\d+)$})[0] => $_ } @recs;
for my $c (@codes) {
    my $r = $by{$c};
    is($r && $r->{status}, $c, "status $c recorded as $c");
    my $want = $c < 400 ? JSON::PP::true : JSON::PP::false;
    ok($r && JSON::PP::is_bool($r->{result}) && $r->{result} == $want,
       "status $c: result " . ($c < 400 ? 'true' : 'false'))
        or diag(explain $r);
}
# insite_gdpr_fsync always: a sync per record, before the next request is
# answered (the metric counts the fdatasync calls made)
my ($syncs) = ($n->get('/metrics')->{body} // '') =~ /^insite_gdpr_fsyncs_total (\d+)$/m;
cmp_ok($syncs // 0, '>=', scalar @codes, 'insite_gdpr_fsync always: one fdatasync per record');
$n->check_log;
done_testing();
