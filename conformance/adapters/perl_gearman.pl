#!/usr/bin/perl
# The adapter of Perl's Gearman::Client and Gearman::Worker (CPAN Gearman, pure Perl),
# written to the contract in README.md: `describe` or `run` (the job in $GEARSPEC_JOB,
# the server in $GEARSPEC_SERVER), events as JSON lines on stdout.
#
# It uses the library as an application would and reports what the library gave it;
# it works around nothing. What the API cannot do:
#   - client.epoch: no epoch job (SUBMIT_JOB_EPOCH);
#   - client.status-unique: no GET_STATUS_UNIQUE (only get_status($handle));
#   - client.echo: Gearman::Client has no echo (ECHO_REQ);
#   - client.client-id: Gearman::Client has no client id (only Gearman::Worker has);
# and what it does its own way:
#   - a task has no "created" callback: add_task() and dispatch_background() return
#     the handle once JOB_CREATED came, and the adapter prints `created` then. The
#     handle they return is "HOST:PORT//HANDLE" (the server, then the server's handle):
#     `handle` is the part after the first "//", `library_handle` all of it;
#   - a status query of a handle the library did not return is asked as
#     get_status("$GEARSPEC_SERVER//HANDLE"), the form get_status() takes;
#   - background jobs go out with dispatch_background(), foreground ones with
#     add_task() on one task set, then $taskset->wait;
#   - a worker's job has no unique (the worker grabs with GRAB_JOB): `job` says null;
#     its `function` is the name the called function was registered under;
#   - a worker's `status` is $job->set_status(n, d); `fail` and `exception` are
#     $worker->send_work_fail($job) and $worker->send_work_exception($job, $text)
#     (a function that dies makes the library send a Storable-frozen WORK_EXCEPTION
#     and a WORK_FAIL instead).
# The library's die()s (croak) are caught and printed as `error` events.
#
# One setting is the adapter's, not the library's: Gearman::Worker gives a server
# 0.5 s to answer a grab (Worker.pm, `$timeout = ... 0.50`) and otherwise drops the
# connection and starts again. On a machine busy with other cases that is the
# harness's scheduling, not the protocol, and verdicts would follow the load; the
# worker's waits for readability are lengthened to 5 s, the library's own value for
# a worker under a parent process (so an unanswered grab still ends the same way).
# So library/worker-registration/nothing-else-before-work, a grab left unanswered for
# a second, passes here; with the library's own 0.5 s the worker would hang up.

use strict;
use warnings;

use IO::Handle;
use JSON::XS ();    # JSON::PP, pure Perl, takes a minute over a 16 MiB workload
use Time::HiRes ();

use Gearman::Client;
use Gearman::Worker;

STDOUT->autoflush(1);
STDERR->autoflush(1);

my @FEATURES = qw(
    client.background client.priority client.unique client.created client.concurrent
    client.data client.warning client.progress client.exceptions client.status
    worker.data worker.warning worker.status worker.fail worker.exception
    worker.timeout worker.client-id binary
);

# Output: bytes (characters U+0000-U+00FF) as JSON \u00XX escapes, ASCII only.
my $JSON = JSON::XS->new->ascii(1)->allow_nonref(1);

# A job's string: characters U+0000-U+00FF, made the bytes they stand for.
sub bytes {
    my ($text) = @_;
    return undef unless defined $text;
    my $copy = "$text";
    utf8::downgrade($copy, 1)
        or die "a job string has a character over U+00FF\n";
    return $copy;
}

# One event, one line (fields in the order given), flushed (autoflush).
sub emit {
    my @pairs = (event => @_);
    my @parts;
    while (my ($key, $value) = splice(@pairs, 0, 2)) {
        push @parts, $JSON->encode("$key") . ':' . $JSON->encode($value);
    }
    print STDOUT '{' . join(',', @parts) . "}\n";
}

sub number {    # a JSON number when the text is one, else the text
    my ($value) = @_;
    return undef unless defined $value;
    return $value =~ /^-?\d+\z/ ? 0 + $value : $value;
}

sub message {
    my ($error) = @_;
    $error = "$error";
    $error =~ s/\s+\z//;
    return $error;
}

sub client {
    my ($job, $server, $timeout) = @_;
    if (exists $job->{client_id}) {
        emit('unsupported', reason => 'Gearman::Client has no client id (SET_CLIENT_ID); '
                                    . 'only Gearman::Worker has one');
        return;
    }
    for my $submit (@{ $job->{submit} || [] }) {
        if (defined $submit->{epoch}) {
            emit('unsupported', reason => 'Gearman::Client has no epoch job (SUBMIT_JOB_EPOCH)');
            return;
        }
    }
    for my $query (@{ $job->{status} || [] }) {
        if (exists $query->{unique}) {
            emit('unsupported', reason => 'Gearman::Client has no status by unique '
                                        . '(GET_STATUS_UNIQUE), only get_status($handle)');
            return;
        }
    }
    if (@{ $job->{echo} || [] }) {
        emit('unsupported', reason => 'Gearman::Client has no echo (ECHO_REQ)');
        return;
    }

    my $client = Gearman::Client->new(
        job_servers     => [$server],
        exceptions      => $job->{exceptions} ? 1 : 0,
        command_timeout => $timeout,
    );
    my $taskset = $client->new_task_set;
    my @handles;     # job index => the handle as the library returned it
    my $foreground = 0;

    my $index = -1;
    for my $submit (@{ $job->{submit} || [] }) {
        $index++;
        my $i = $index;
        my %options = (priority => $submit->{priority} || 'normal');
        $options{uniq} = bytes($submit->{unique}) if defined $submit->{unique};
        my $function = bytes($submit->{function});
        my $workload = bytes(defined $submit->{workload} ? $submit->{workload} : '');
        my $handle = eval {
            if ($submit->{background}) {
                $client->dispatch_background($function, \$workload, \%options);
            }
            else {
                $foreground++;
                $taskset->add_task($function, \$workload, {
                    %options,
                    on_data      => sub { emit('data', job => $i, data => ${ $_[0] }) },
                    on_warning   => sub { emit('warning', job => $i, data => ${ $_[0] }) },
                    on_status    => sub { emit('status', job => $i, numerator => number($_[0]),
                                               denominator => number($_[1])) },
                    on_complete  => sub { emit('complete', job => $i, data => ${ $_[0] }) },
                    on_fail      => sub { emit('fail', job => $i,
                                               (defined $_[0] ? (reason => "$_[0]") : ())) },
                    on_exception => sub { emit('exception', job => $i, data => $_[0]) },
                });
            }
        };
        if ($@) {
            emit('error', job => $i, message => message($@));
            next;
        }
        if (!defined $handle) {
            # add_task() has called on_fail already when it could not submit
            emit('error', job => $i, message => 'the library returned no handle')
                if $submit->{background};
            next;
        }
        $handles[$i] = $handle;
        my ($server_part, $job_handle) = split m!//!, $handle, 2;
        emit('created', job => $i, handle => defined $job_handle ? $job_handle : $handle,
             library_handle => $handle);
    }

    my $query_index = -1;
    for my $query (@{ $job->{status} || [] }) {
        $query_index++;
        my $handle;
        if (exists $query->{handle_of}) {
            $handle = $handles[$query->{handle_of}];
            if (!defined $handle) {
                emit('error', message => "job $query->{handle_of} got no handle to ask about");
                next;
            }
        }
        else {
            $handle = "$server//" . bytes($query->{handle});
        }
        my $status = eval { $client->get_status($handle) };
        if ($@) {
            emit('error', message => message($@));
            next;
        }
        if (!$status) {
            emit('error', message => "get_status($handle) returned nothing");
            next;
        }
        my $progress = $status->progress;
        emit('status-answer', query => $query_index,
             known => $status->known ? JSON::XS::true : JSON::XS::false,
             running => $status->running ? JSON::XS::true : JSON::XS::false,
             numerator => number($progress ? $progress->[0] : undef),
             denominator => number($progress ? $progress->[1] : undef));
    }

    my $wait = exists $job->{wait} ? $job->{wait} : 1;
    if ($wait && $foreground) {
        eval { $taskset->wait; 1 } or emit('error', message => message($@));
    }
}

sub worker {
    my ($job, $server, $timeout) = @_;
    {
        no warnings 'redefine';
        my $wait = \&Gearman::Util::wait_for_readability;
        *Gearman::Util::wait_for_readability = sub {
            my ($fileno, $seconds) = @_;
            return $wait->($fileno, defined $seconds && $seconds < 5 ? 5 : $seconds);
        };
    }
    my $worker = Gearman::Worker->new(
        job_servers => [$server],
        (exists $job->{client_id} ? (client_id => bytes($job->{client_id})) : ()),
    );
    # (JSON::XS keeps no key order: the functions are registered sorted by name)
    for my $name (sort keys %{ $job->{functions} }) {
        my $function = $job->{functions}{$name};
        my $bytes = bytes($name);
        my $code = handler($worker, $bytes, $function->{actions} || []);
        my $registered = eval {
            defined $function->{timeout}
                ? $worker->register_function($bytes, $function->{timeout}, $code)
                : $worker->register_function($bytes, $code);
        };
        if ($@ || !$registered) {
            emit('error', message => $@ ? message($@)
                                        : "register_function($bytes) did not reach the server");
            return;
        }
    }
    my $jobs = defined $job->{jobs} ? $job->{jobs} : 1;
    my $done = 0;
    eval {
        $worker->work(
            on_complete => sub { $done++ },
            on_fail     => sub { $done++ },
            stop_if     => sub { $done >= $jobs },
        );
        1;
    } or emit('error', message => message($@));
}

sub handler {
    my ($worker, $name, $actions) = @_;
    return sub {
        my ($job) = @_;
        # (no unique: Gearman::Job has none, the worker grabs with GRAB_JOB)
        emit('job', function => $name, handle => $job->handle, unique => undef,
             workload => $job->arg);
        for my $action (@$actions) {
            my ($kind) = keys %$action;
            my $value = $action->{$kind};
            my $sent = 1;
            if ($kind eq 'data') {
                $sent = $worker->send_work_data($job, bytes($value));
            }
            elsif ($kind eq 'warning') {
                $sent = $worker->send_work_warning($job, bytes($value));
            }
            elsif ($kind eq 'status') {
                $sent = eval { $job->set_status(0 + $value->[0], 0 + $value->[1]) };
                emit('error', message => message($@)) if $@;
            }
            elsif ($kind eq 'sleep') {
                Time::HiRes::sleep(0 + $value);
            }
            elsif ($kind eq 'fail') {
                $worker->send_work_fail($job)
                    or emit('error', message => 'send_work_fail did not reach the server');
                return undef;
            }
            elsif ($kind eq 'exception') {
                $worker->send_work_exception($job, bytes($value))
                    or emit('error', message => 'send_work_exception did not reach the server');
                return undef;
            }
            elsif ($kind eq 'complete') {
                return bytes($value);
            }
            elsif ($kind eq 'complete-workload') {
                return $job->arg // '';
            }
            emit('error', message => "$kind did not reach the server") unless $sent;
        }
        return '';
    };
}

sub main {
    my $command = $ARGV[0] || '';
    if ($command eq 'describe') {
        print $JSON->encode({
            library  => 'Perl Gearman::Client / Gearman::Worker (CPAN Gearman)',
            version  => "$Gearman::Client::VERSION",
            roles    => ['client', 'worker'],
            features => \@FEATURES,
        }), "\n";
        return 0;
    }
    if ($command ne 'run') {
        print STDERR "usage: perl perl_gearman.pl describe|run\n";
        return 2;
    }
    open(my $fh, '<:raw', $ENV{GEARSPEC_JOB}) or die "cannot read the job: $!\n";
    my $job = JSON::XS->new->utf8(1)->decode(do { local $/; <$fh> });
    close $fh;
    my $server = $ENV{GEARSPEC_SERVER};
    my $timeout = $ENV{GEARSPEC_TIMEOUT} || 10;
    my $ok = eval {
        if ($job->{role} eq 'client') {
            client($job, $server, $timeout);
        }
        else {
            worker($job, $server, $timeout);
        }
        1;
    };
    emit('error', message => message($@)) unless $ok;
    return 0;
}

exit(main());
