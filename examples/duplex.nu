# A duplex generator wrapping a line-oriented CLI, the calculator `bc`: each `calc.send`
# frame is a line of input, each line bc prints becomes a `calc.recv` frame.
#   xs generator spawn ./store calc examples/duplex.nu
#   echo '6 * 7' | xs append ./store calc.send
#   xs eval ./store -c '.last calc.recv | .cas $in.hash'                   # 42
{
  duplex: true
  run: {|| ^bc -q }          # the send frames are its input (do not write `$in`: it waits for the end)
}
