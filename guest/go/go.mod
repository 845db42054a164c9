module wasitls.dev/guest/go

go 1.22
