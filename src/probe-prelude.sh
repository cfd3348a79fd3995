# Shared by pvegpu's probes (host, guest, verify): each section is printed as
# "### pvegpu <name> [<argument>]", the command's output (stdout and stderr), "### pvegpu exit <rc>".
# section64 sends the output base64-encoded, marked `enc=base64`; RawFacts decodes it.
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

# As section(), for output a user other than root can write (Compose files in their folders,
# their CDI specs, model names): sent base64-encoded, so no line of it can pose as a marker.
# The status goes round base64 through fd 3; the substitution ends only when base64 has
# written everything.
section64() { # name [argument] -- command...
  name=$1; shift
  arg=
  if [ "$1" != "--" ]; then arg=" $1"; shift; fi
  shift
  echo "### pvegpu $name$arg enc=base64"
  exec 4>&1
  rc=$( { { "$@" 2>&1; echo "$?" >&3; } | base64 >&4; } 3>&1 )
  exec 4>&-
  echo "### pvegpu exit $rc"
}
