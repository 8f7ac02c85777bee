# /healthz tells "connected and authenticated" from "TCP reachable": against
# a Redis with requirepass, a wrong password (or none) is 503 "degraded"
# with state "auth_failed" and Redis' reason, never "ok"; the right password
# is 200 "connected".
use strict;
use warnings;
use lib 't/lib';

use Test::More;
use Time::HiRes qw(time sleep);

use Insite::Nginx;
use Insite::Services qw(start_redis);

plan skip_all => 'TEST_NGINX_LOAD_MODULES not set (run under scripts/test.sh)'
    unless $ENV{TEST_NGINX_LOAD_MODULES};

my $redis = start_redis();
my $port = $redis->port;
is($redis->cli('CONFIG', 'SET', 'requirepass', 's3cret-pw'), 'OK', 'Redis requires a password');

sub healthz_states {
    my ($ngx, $n) = @_;
    my %seen;
    for (1 .. $n) {
        my $r = $ngx->get('/healthz', timeout => 3);
        my ($st) = ($r->{body} // '') =~ /^\{"status":"(\w+)"/;
        my ($rs) = ($r->{body} // '') =~ /"redis":\{"configured":true,"state":"(\w+)"/;
        $seen{join ' ', $r->{status} // 'none', $st // '?', $rs // '?'}++;
        sleep 0.05;
    }
    return \%seen;
}

for my $case (['password=wrong-pw', 'a wrong password'], ['', 'no password']) {
    my $ngx = Insite::Nginx->new(
        http   => "    insite_redis 127.0.0.1:$port $case->[0] connect_timeout=500ms;",
        server => "        location = /healthz { insite_healthz; }",
    );
    # both workers have tried (and been refused) at least once
    my $deadline = time + 10;
    sleep 0.1 until $ngx->error_log =~ /handshake refused(?s:.*)handshake refused/ || time > $deadline;
    my $seen = healthz_states($ngx, 20);
    ok(!grep({ /^200 / } keys %$seen), "$case->[1]: never 200") or diag explain $seen;
    ok($seen->{'503 degraded auth_failed'}, "$case->[1]: 503 degraded, state auth_failed")
        or diag explain $seen;
    my $body = $ngx->get('/healthz')->{body};
    like($body, qr/"error":"(WRONGPASS|NOAUTH|ERR)[^"]*"/, "$case->[1]: Redis' reason in the answer") or diag($body);
    unlike($body . $ngx->error_log, qr/wrong-pw/, "$case->[1]: the password is not echoed");
    $ngx->stop;
}

my $ngx = Insite::Nginx->new(
    http   => "    insite_redis 127.0.0.1:$port password=s3cret-pw;",
    server => "        location = /healthz { insite_healthz; }",
);
my $deadline = time + 10;
my $streak = 0;
while (time < $deadline && $streak < 10) {
    $streak = $ngx->get('/healthz')->{status} == 200 ? $streak + 1 : 0;
    sleep 0.05;
}
is($streak, 10, 'the right password: 200');
like($ngx->get('/healthz')->{body}, qr/^\{"status":"ok",.*"state":"connected","ping_ms":\d+\}\}$/, 'connected');
$ngx->stop;

done_testing();
