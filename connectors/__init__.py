"""Connectors to help desks: read a new ticket, write the router's answer back, report agents'
changes. Pure help-desk knowledge (payloads, signatures, REST calls, label mapping); the
service (shim/) wires them to classification, its store and its outbox. Nothing here imports
from shim/.

    base.py       what every connector is: modes, the ticket read, the write-back, errors
    http.py       which failed help-desk calls are retried and which are given up
    label_map.py  model labels -> the help desk's queue and priority names
    writeback.py  what to write for one answer in a mode: fields that cleared the gate, a note
    zammad.py     Zammad: trigger webhook (HMAC-SHA1 signed), REST write-back, closed tickets
    znuny.py      Znuny: Ticket::Generic invoker requests and answers, GenericTicketConnectorREST
    rt.py         Request Tracker 5: REST 2.0 polling (tickets, transactions), write-back,
                  resolved tickets
"""
