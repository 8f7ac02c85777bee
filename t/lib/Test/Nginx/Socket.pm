package Test::Nginx::Socket;

# InsiteChart Edge's Test::Nginx::Socket: runs openresty/test-nginx style
# .t files (Test::Base block format) against a real multi-process nginx.
# The work is done in Test::Nginx::Util; this package is the Test::Base
# front end, so `use Test::Nginx::Socket 'no_plan'` / `plan tests => N` /
# blocks() / done_testing behave as with the real module.
#
# No sub is defined with a plain `sub name {` here on purpose: Test::Base
# -Base applies Spiffy's source filter, which rewrites those.

use lib 'lib';
use Test::Base -Base;
use Test::Nginx::Util ();

our $VERSION = '0.29-insite';

our @EXPORT = qw(
    run_tests run_test repeat_each no_shuffle master_on master_off
    master_process_enabled workers worker_connections log_level env_to_nginx
    no_long_string add_block_preprocessor add_response_body_check
    add_cleanup_handler server_root html_dir server_port
    server_port_for_client server_name server_addr config_preamble
    no_root_location timeout bail_out no_nginx_manager
    check_accum_error_log use_hup is_str done_testing
    $ServerPort $ServerPortForClient $ServerRoot $HtmlDir $ServerName
    $ServerAddr $NginxBinary $RepeatEach
);

BEGIN {
    no strict 'refs';
    for my $f (qw(
        repeat_each no_shuffle master_on master_off master_process_enabled
        workers worker_connections log_level env_to_nginx no_long_string
        add_block_preprocessor add_response_body_check add_cleanup_handler
        server_root html_dir server_port server_port_for_client server_name
        server_addr config_preamble no_root_location timeout bail_out
        no_nginx_manager check_accum_error_log use_hup is_str run_test))
    {
        *{"Test::Nginx::Socket::$f"} = \&{"Test::Nginx::Util::$f"};
    }
    *Test::Nginx::Socket::done_testing = \&Test::More::done_testing;
    for my $v (qw(ServerPort ServerPortForClient ServerRoot HtmlDir
                  ServerName ServerAddr NginxBinary RepeatEach))
    {
        *{"Test::Nginx::Socket::$v"} = \${"Test::Nginx::Util::$v"};
    }

    *Test::Nginx::Socket::run_tests = sub {
        Test::Nginx::Util::run_tests();
        # Test::Base's END would otherwise run run_compare() on our blocks
        # when the file ends with done_testing() instead of a plan
        Test::Base::default_object()->{spec} = undef;
    };
}

1;
