module example.invalid/frw-pause

go 1.22
