"""golive: the steps that make a prepared deploy live on a host, run as root.

Installed by wsgistack as /usr/local/lib/wsgistack/golive, one file (a zipapp of this
package, python3's standard library only) run with `python3 -I`. A deploy plans one
command per step (`golive STEP --help` for each); each step that changes the host holds
its deploy lock for its whole duration and either completes or leaves the live state as it
was.

Every step records a stamp (/var/lib/wsgistack/applied/<unit>): a digest of the live state
it applied, so a host read can tell a step cut short from one that completed. Candidates
are read once, under the lock, checked against the digests the deploy computed, and staged
as <file>.new from that verified content: a concurrent deploy's candidates are refused,
never half-applied. The exit status is 0 on success and 1 with one reason line otherwise;
output that cannot be written (the controller went away) never changes the outcome.
"""
