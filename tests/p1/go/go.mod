module wasitls.test/p1

go 1.22

require wasitls.dev/guest/go v0.0.0

replace wasitls.dev/guest/go => ../../../guest/go
