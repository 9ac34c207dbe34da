"""Requests said in a stock way go straight to their tool, with the arguments their words hold;
anything else is left to the model (None)."""
from __future__ import annotations

import pytest

from operators.voice.intents import clock_time, event_title, route, words_arguments


@pytest.mark.parametrize("text, tool", [
    ("Could you put my sister's birthday party in the calendar for Sunday?", "add_event"),
    ("Set up a call with the landlord tomorrow at 10 am.", "add_event"),
    ("Note down that the car needs new tyres.", "add_note"),
    ("Jot this down: call the plumber.", "add_note"),
    ("Remember that my locker code is 4512.", "add_note"),
    ("Show me my notes.", "list_notes"),
    ("Is there anything on my agenda for Wednesday?", "list_events"),
    ("Am I busy tonight?", "list_events"),
    ("What time is the meeting on Friday?", "list_events"),
    ("Which day is it?", "current_time"),
    ("Tell me the time.", "current_time"),
    ("Do you know what day it is?", "current_time"),
    ("Does the travel policy cover taxis?", "search_documents"),
    ("What does the handbook say about the date of the audit?", "search_documents"),
    ("Add a meeting to go over the travel policy on Friday.", "add_event"),   # a write comes first
    ("Take a note: the expense guide changed.", "add_note"),
])
def test_stock_requests_are_routed(text, tool):
    assert route(text) == tool


@pytest.mark.parametrize("text", [
    "Tell me a joke.", "How are you today?", "I had a great time today.",
    "Make sure you speak slowly.", "What is the capital of France?",
    "I want to book a flight someday.",          # no calendar, day or time: not plainly an event
    "Do you remember my name?",
    "I need the dentist on my agenda for tomorrow.",   # an add, not said the stock way
])
def test_other_requests_are_left_to_the_model(text):
    assert route(text) is None


def test_a_tool_outside_the_allowed_set_is_not_routed_to():
    assert route("Take a note: buy bread.", allowed=["current_time"]) is None
    assert route("What time is it?", allowed=["current_time"]) == "current_time"


def test_event_arguments_come_from_the_words():
    assert words_arguments("add_event", "Could you add a haircut on Friday at 4:30 pm?") == {
        "day": "friday", "time": "16:30", "title": "haircut"}
    args = words_arguments("add_event", "Please schedule dinner with Ana tonight at 8.")
    assert args == {"day": "tonight", "time": "20:00", "title": "dinner with Ana"}
    assert words_arguments("add_event", "Book a meeting with Sam next Tuesday.")["day"] == "next tuesday"
    assert "day" not in words_arguments("add_event", "Add a dentist appointment.")


def test_a_long_or_empty_title_is_left_to_the_model():
    assert event_title("Add it on Monday.") == "it"
    assert event_title("Schedule on Monday.") == ""
    assert event_title("Add the thing I told you about last week with the people from the "
                       "office on Monday.") == ""
    assert event_title("What is on Monday?") == ""      # no verb: not a request to add


def test_note_text_and_defaults():
    assert words_arguments("add_note", "Take a note: buy milk and eggs.") == {"text": "Buy milk and eggs."}
    assert words_arguments("add_note", "Please write down that the wifi is on the fridge.") == {
        "text": "The wifi is on the fridge."}
    assert words_arguments("add_note", "Take a note.") == {}          # the model is asked
    assert words_arguments("list_events", "What's on my calendar?") == {"day": "today"}
    assert words_arguments("list_events", "What's on my calendar?", defaults=False) == {}
    assert words_arguments("search_documents", " What is the vacation policy? ") == {
        "query": "What is the vacation policy?"}


@pytest.mark.parametrize("said, expected", [
    ("noon", "12:00"), ("midnight", "00:00"), ("3 pm", "15:00"), ("3", "15:00"), ("9", "09:00"),
    ("9:30 a.m.", "09:30"), ("12 am", "00:00"), ("12 pm", "12:00"), ("11", "11:00"),
    ("25", "25"), ("nine", "09:00"), ("three o'clock", "15:00"), ("ten pm", "22:00"),
])
def test_clock_times(said, expected):
    assert clock_time(said) == expected


def test_an_evening_request_reads_its_hour_as_evening():
    assert clock_time("8", evening=True) == "20:00" and clock_time("8") == "08:00"
