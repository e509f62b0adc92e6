import pytest

from cronsup.names import assign, derive


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
