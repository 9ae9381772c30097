namespace E3.Interop;
