// Package notify delivers rebuild reports so that they always arrive.
//
// A Notifier sends a Message: by SMTP (the topic in the subject and in a Keywords header,
// so list filters can tell rebuild reports apart), as a JSON webhook, or to a writer.
// FanOut tries several notifiers; Spool keeps a report that could not be delivered on
// disk and delivers it first on the next run, once.
package notify
