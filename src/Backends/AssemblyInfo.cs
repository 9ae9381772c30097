namespace E3.Backends;
