//! Kernel UDP backend (recvmmsg/sendmmsg).
