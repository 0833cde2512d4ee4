"""What comes back: bounces, complaints, returned letters and one-click unsubscribes.

`classify` reads one message of a mailbox, `mailbox` reads Maildir and IMAP folders,
`score` decides when bounces block an address, `process` ties them to the ledger,
`returned` blocks postal addresses, `receiver` is the one-click unsubscribe WSGI app, and
`blocks` is the one check the runner makes (`block_reason`).
"""
