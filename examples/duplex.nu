# A duplex generator wrapping a line-oriented CLI (awk here; bc or a REPL work the same):
# each `calc.send` frame is a line of input, each line it prints a `calc.recv` frame.
#   xs generator spawn ./store calc examples/duplex.nu
#   echo '21' | xs append ./store calc.send; xs last ./store calc.recv | xs cas ./store ...
{
  duplex: true
  run: {|| $in | ^awk '{ print $1 * 2; fflush() }' }
}
