# A compliance report being built does not hold up the other APIs
# (docs/gdpr-retention.md, "Compliance report"): the report's scan of the
# audit trail is held waiting on a table lock taken by the test, so the
# report is provably in progress; meanwhile a user's consent GET and an
# operator's retention GET answer, and the report has still not answered.
# Released, the report completes with the seeded figures.  No timing: the
# order of events is what is asserted.

use strict;
use warnings;
use lib 't/lib';

use IO::Handle ();
use IO::Select ();
use IO::Socket::INET ();
use JSON::PP ();
use Test::More;

use Insite::GDPRWorker qw(psql wait_for slurp);
use Insite::Services qw(http_request);

plan skip_all => 'INSITE_KAFKA_BOOTSTRAP not set (run under scripts/test.sh)' unless $ENV{INSITE_KAFKA_BOOTSTRAP};
my $w = Insite::GDPRWorker::setup();
plan skip_all => "$w->{bin} not built" unless -x $w->{bin};
my $json = JSON::PP->new->utf8->canonical;

my $api = Insite::GDPRWorker::report_api($w);

# ---- the audit trail locked by another session
open(my $locker, '|-', 'psql', $w->{dsn}, '-X', '-q', '-v', 'ON_ERROR_STOP=1') or die "psql: $!";
$locker->autoflush(1);
print $locker "BEGIN; LOCK TABLE gdpr_audit_trail IN ACCESS EXCLUSIVE MODE; SELECT 1;\n";
ok(wait_for(20, sub { psql($w->{dsn}, "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                                      . " WHERE c.relname = 'gdpr_audit_trail' AND l.mode = 'AccessExclusiveLock'"
                                      . " AND l.granted") eq '1' }), 'the test holds the audit trail');

# ---- a report starts: its scans wait on the lock
my $rs = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $api, Proto => 'tcp') or die "connect: $!";
print $rs "GET /api/v1/gdpr/compliance-report?start_date=2025-03-01&end_date=2025-03-31&format=json HTTP/1.1\r\n"
        . "Host: localhost\r\nX-User-Id: dpo\r\nX-User-Scopes: gdpr:admin\r\nConnection: close\r\n\r\n";
ok(wait_for(30, sub { psql($w->{dsn}, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                      . " AND query LIKE '%FROM gdpr_audit_trail%'") >= 1 }),
   'the report is being built: its audit-trail scan waits on the lock');

# ---- other APIs answer meanwhile
my $r = http_request($api, 'GET', '/api/v1/gdpr/consents', headers => { 'X-User-Id' => 'u1' }, timeout => 30);
is($r->{status}, 200, "a user's consent GET answers while the report is being built");
like($r->{body} // '', qr/"consents"/, 'with the consents');
$r = http_request($api, 'GET', '/api/v1/gdpr/retention/policies',
                  headers => { 'X-User-Id' => 'dpo', 'X-User-Scopes' => 'gdpr:admin' }, timeout => 30);
is($r->{status}, 200, "an operator's retention GET answers while the report is being built");
like($r->{body} // '', qr/"price_history"/, 'with the policies');
ok(!IO::Select->new($rs)->can_read(0), 'the report has not answered yet (it answers after them)');

# ---- released: the report completes, with the seeded figures
print $locker "COMMIT;\n";
close $locker;
my $raw = '';
my $sel = IO::Select->new($rs);
my $deadline = time + 60;
while (time < $deadline) {
    next unless $sel->can_read(1);
    my $n = sysread($rs, my $buf, 65536);
    last unless $n;
    $raw .= $buf;
}
my ($head, $body) = split /\r\n\r\n/, $raw, 2;
like($head // '', qr{^HTTP/1\.1 200}, 'the report answers 200 once the lock is released');
$body =~ s/^[0-9a-f]+\r\n|\r\n[0-9a-f]+\r\n|\r\n0\r\n\r\n$//g if ($head // '') =~ /chunked/i;
my $j = eval { $json->decode($body) } // {};
is($j->{data_processing}{operations}, 18, 'report: the seeded 18 operations');
is($j->{audit}{shipped_records}, 18, 'report: the seeded completeness');

done_testing();
