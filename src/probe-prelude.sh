# Shared by pvegpu's probes (host, guest, verify): each section is printed as
# "### pvegpu <name> [<argument>]", the command's output (stdout and stderr), "### pvegpu exit <rc>".
# section64 sends the output base64-encoded, marked `enc=base64`; RawFacts decodes it.
export LC_ALL=C
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH

# A section's marker line, its name and argument followed by `suffix`; `named` is how many of
# the arguments (name, argument, --) it took.
marker() { # suffix name [argument] -- command...
  suffix=$1; shift
  if [ "$2" != "--" ]; then
    echo "### pvegpu $1 $2$suffix"; named=3
  else
    echo "### pvegpu $1$suffix"; named=2
  fi
}

section() { # name [argument] -- command...
  marker "" "$@"; shift "$named"
  "$@" 2>&1
  echo "### pvegpu exit $?"
}

# As section(), for output a user other than root can write (Compose files in their folders,
# their CDI specs, model names): sent base64-encoded, so no line of it can pose as a marker.
# The status goes round base64 through fd 3; the substitution ends only when base64 has
# written everything.
section64() { # name [argument] -- command...
  marker " enc=base64" "$@"; shift "$named"
  exec 4>&1
  rc=$( { { "$@" 2>&1; echo "$?" >&3; } | base64 >&4; } 3>&1 )
  exec 4>&-
  echo "### pvegpu exit $rc"
}
