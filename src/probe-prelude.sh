# Shared by pvegpu's probes (host, guest, verify): each section is printed as
# "### pvegpu <name> [<argument>]", the command's output (stdout and stderr), "### pvegpu exit <rc>".
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH

section() { # name [argument] -- command...
  name=$1; shift
  arg=
  if [ "$1" != "--" ]; then arg=" $1"; shift; fi
  shift
  echo "### pvegpu $name$arg"
  "$@" 2>&1
  echo "### pvegpu exit $?"
}
