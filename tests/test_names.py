import pytest

from cronsup.names import assign, derive, readable


@pytest.mark.parametrize("command, name", [
    ("/usr/local/bin/poll-queue --fast", "poll-queue"),
    ("cd / && run-parts --report /etc/cron.daily", "run-parts"),
    ("test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.daily; }", "run-parts"),
    ("[ -x /usr/lib/php/sessionclean ] && if [ ! -d /run/systemd/system ]; then /usr/lib/php/sessionclean; fi",
     "sessionclean"),
    ("command -v debian-sa1 > /dev/null && debian-sa1 1 1", "debian-sa1"),
    ("test -e /run/systemd/system || SERVICE_MODE=1 /sbin/e2scrub_all -A -r", "e2scrub_all"),
    ("nice -n 19 ionice -c3 /usr/bin/backup.sh --all", "backup"),
    ("FOO=1 python3 -m mypkg.cleanup", "cleanup"),
    ("python3 /opt/app/manage.py clearsessions", "manage"),
    ("sh -c 'sleep 3; /opt/x/rotate'", "rotate"),
    ("timeout 1h flock -n /tmp/lock /usr/bin/sync-data", "sync-data"),
    ("sleep $((RANDOM % 60)); /usr/bin/certbot -q renew", "certbot"),
    ("(cd /srv && ./run.sh)", "run"),
    ("$HOME/bin/daily.job >> $HOME/tmp/out 2>&1", "daily-job"),
    ("2>/dev/null /usr/bin/x", "x"),
    ("php /var/www/artisan schedule:run", "artisan"),
    ("'/opt/my tool/bin/thing' --x", "thing"),
    (":", "job"),
    ("test -x /usr/bin/certbot -a \\! -d /run/systemd/system && perl -e 'sleep int(rand(43200))' && "
     "certbot -q renew", "certbot"),
    ("python3 -c 'import x; x.run()'", "python3"),
])
def test_a_name_comes_from_the_program_the_line_runs(command, name):
    assert derive(command) == name


def test_the_first_line_keeps_the_name_and_later_ones_get_their_own_suffix():
    names = assign([(None, "/bin/a", "1 * * * * /bin/a"), (None, "/bin/a", "2 * * * * /bin/a")])
    assert names[0] == "a" and names[1].startswith("a-")
    again = assign([(None, "/bin/b", "x"), (None, "/bin/a", "1 * * * * /bin/a"),
                    (None, "/bin/a", "2 * * * * /bin/a")])
    assert again[1:] == names


def test_pinned_names_are_kept_and_taken_first():
    assert assign([(None, "/bin/a", "l1"), ("a", "/bin/z", "l2")])[1] == "a"
    assert assign([(None, "/bin/a", "l1"), ("a", "/bin/z", "l2")])[0].startswith("a-")


@pytest.mark.parametrize("command, name", [
    ("cd / && run-parts --report /etc/cron.daily", "cron-daily"),
    ("test -x /usr/sbin/anacron || { cd / && run-parts --report /etc/cron.weekly; }", "cron-weekly"),
    ("run-parts /etc/cron.hourly", "cron-hourly"),
    ("command -v debian-sa1 > /dev/null && debian-sa1 1 1", "sa1"),
    ("cd /srv/app && python manage.py cleanup --days 3", "manage-cleanup"),
    ("python3 /opt/app/manage.py clearsessions", "manage-clearsessions"),
    ("php /var/www/artisan schedule:run", "artisan-schedule-run"),
    ("[ -x /etc/init.d/anacron ] && /usr/sbin/invoke-rc.d anacron start >/dev/null", "anacron"),
    ("python3 /opt/x/job.py --verbose", "job"),  # an option is no subcommand
    ("/usr/local/bin/poll-queue --fast", "poll-queue"),  # otherwise as a plain line's name
    ("[ -x /usr/lib/php/sessionclean ] && /usr/lib/php/sessionclean", "sessionclean"),
])
def test_import_names_are_what_a_person_would_write(command, name):
    assert readable(command) == name


def test_import_names_that_collide_get_the_lines_time_then_a_digest():
    entries = [(None, "debian-sa1 1 1", "5-55/10 * * * * debian-sa1 1 1"),
               (None, "debian-sa1 60 2", "59 23 * * * debian-sa1 60 2"),
               (None, "debian-sa1 9", "*/7 * * * * debian-sa1 9"),
               (None, "run-parts /etc/cron.daily", "@daily run-parts /etc/cron.daily"),
               (None, "run-parts /etc/cron.daily", "25 6 * * * run-parts /etc/cron.daily")]
    names = assign(entries, readable_names=True)
    assert names[:2] == ["sa1", "sa1-2359"] and names[2].startswith("sa1-") and len(names[2]) == 8
    assert names[3:] == ["cron-daily", "cron-daily-0625"]
    # Stable: another line added before them renames none of them.
    assert assign([(None, "/bin/other", "0 1 * * * /bin/other")] + entries, readable_names=True)[1:] == names
    assert len(set(names)) == len(names)


def test_plain_line_names_do_not_change():
    # A jobs file's plain lines keep the names SPEC section 1 gives (history is kept by name).
    assert assign([(None, "cd / && run-parts --report /etc/cron.daily", "x")]) == ["run-parts"]
