package Insite::Gdpr;

# What the GDPR tests (t/70x) share: waiting for a condition with a
# deadline, psql, reading files and journal records, user tokens.
#
#   use Insite::Gdpr qw(slurp spew wait_for psql journal_records token);
#   ok(wait_for(10, sub { psql($dsn, 'SELECT 1') eq '1' }));
#   my $t = token('secret', 'alice');              # HS256, 1 h

use strict;
use warnings;

use Exporter 'import';
use JSON::PP ();
use Time::HiRes qw(time sleep);

use Insite::JWT;
use Insite::Services qw(run_cmd);

our @EXPORT_OK = qw(slurp spew wait_for psql journal_records token);

my $JSON = JSON::PP->new->utf8;

sub slurp { return '' unless -e $_[0]; local (@ARGV, $/) = @_; my $d = <>; $d // '' }
sub spew { Test::Nginx::Util::spew(@_) }

# polls cond every 50 ms until it is true or secs have passed
sub wait_for {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (time < $deadline) { return 1 if $cond->(); sleep 0.05 }
    return $cond->();
}

# one statement, tuples only, unaligned; dies with psql's message
sub psql {
    my ($dsn, $sql) = @_;
    my ($o, $r) = run_cmd(20, 'psql', $dsn, '-X', '-qtA', '-v', 'ON_ERROR_STOP=1', '-c', $sql);
    die "psql: $o" if $r;
    chomp $o;
    return $o;
}

# every record of every audit-*.jsonl file in dir, decoded
sub journal_records {
    my ($dir) = @_;
    my @r;
    for my $f (glob "$dir/audit-*.jsonl") {
        push @r, map { $JSON->decode($_) } grep { /\S/ } split /\n/, slurp($f);
    }
    return @r;
}

sub token {
    my ($secret, $sub) = @_;
    return Insite::JWT::hs256($secret, { sub => $sub, exp => time + 3600 });
}

1;
