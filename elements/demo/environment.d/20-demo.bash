export DIB_DEMO_GREETING=${DIB_DEMO_GREETING:-"hello from dib-core"}
